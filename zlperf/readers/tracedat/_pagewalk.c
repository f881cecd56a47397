/*
 * zlperf's one native part, the trace reader's inner loop: the ring-buffer page walk of
 * ringbuffer.decode_pages, record by record, and, while each record is in the cache, the gather of the
 * fields of the event ids the caller names (runs.RunDecoder: those it has met).
 *
 * The numpy walk advances all pages in lockstep, one numpy pass per record position; this walks each
 * page once in plain C. Same semantics to the bit (kernel/trace/ring_buffer.c record headers, read as
 * libtraceevent's kbuffer-parse.c reads them); the Python side keeps the page headers, the lost-event
 * counts and the stream positions, and types the gathered bytes (fields.gathered_columns).
 * tests/test_native_walk.py checks it record by record against the numpy walk and gather on real and
 * mutated pages, and the readers' tests check both against libtracecmd.
 *
 * Loaded with ctypes (no Python API, so any python3 that runs zlperf, perf's embedded one included,
 * can use the same library). Every read is bounds-checked against the caller's sizes: a hostile file
 * can make a record invalid, never a read outside `words` or `data` or a write past an output array.
 */
#include <stdint.h>
#include <string.h>

#define TS_SHIFT 27
#define TS_MSB (((uint64_t)0xF8) << 56)
#define TYPE_DATA_MAX 28
#define TYPE_PADDING 29
#define TYPE_TIME_EXTEND 30
#define TYPE_TIME_STAMP 31

enum { PROBLEM_BAD_RECORD = 1, PROBLEM_RUNS_OFF = 2 };

/* The 32-bit word at index i, in host order (records are 4-byte aligned, the buffer may not be). */
static inline uint32_t word_at(const uint8_t *data, int64_t i, int swap)
{
    uint32_t v;
    memcpy(&v, data + i * 4, 4);
    return swap ? __builtin_bswap32(v) : v;
}

/* Copy `size` bytes at byte `at` of data (nbytes long) to dst, swapped when big; bytes past nbytes are 0. */
static inline void copy_item(uint8_t *dst, const uint8_t *data, int64_t nbytes, int64_t at, int64_t size, int big)
{
    uint8_t tmp[8] = {0};
    if (at >= 0 && at + size <= nbytes)
        memcpy(tmp, data + at, size);
    else
        for (int64_t b = 0; b < size; b++)
            tmp[b] = at + b >= 0 && at + b < nbytes ? data[at + b] : 0;
    if (big)
        for (int64_t b = 0; b < size; b++)
            dst[b] = tmp[size - 1 - b];
    else
        memcpy(dst, tmp, size);
}

/* A string column of a slot: a short __data_loc string per record, as one 64-bit word. */
struct zl_string {
    int64_t slot;    /* the slot it belongs to */
    int64_t at;      /* the payload offset of the string's location word */
    int64_t base;    /* what a __rel_loc start counts from (0: __data_loc) */
    uint64_t *out;   /* a word per record of the slot (its rows_cap rows) */
    int64_t longer;  /* out: strings longer than 8 bytes (their words are 0) */
    int64_t differ;  /* out: 1 unless every word equals the first */
};

/* What to gather while walking: which event ids, and of their records which bytes and strings. */
struct zl_plan {
    const int8_t *slot_of;     /* 65536 entries: the slot of an event id, -1 for none */
    int64_t n_slots;
    int64_t *count;            /* per slot, out: its records; -1 when they did not fit its rows */
    const int64_t *rows_cap;   /* per slot: the rows its outputs have (an estimate: a run's mix of events) */
    int64_t *const *rec;       /* per slot: its records' numbers among the run's data records */
    const int64_t *reach;      /* per slot: the payload bytes copied of each record (its fixed fields) */
    uint8_t *const *rows;      /* per slot: rows of reach bytes */
    int64_t n_strings;
    struct zl_string *strings;
};

/* A short __data_loc string as fields.py reads it: start from the location word, length cut to the record
   (plen payload bytes) and to the data; its bytes as a little-endian u64, or 0 and ++longer when > 8 bytes. */
static inline uint64_t short_string(const uint8_t *data, int64_t nbytes, int big, int64_t payload, int64_t plen,
                                    struct zl_string *c)
{
    uint32_t loc;
    if (!big && payload + c->at + 4 <= nbytes)
        memcpy(&loc, data + payload + c->at, 4);
    else
        copy_item((uint8_t *)&loc, data, nbytes, payload + c->at, 4, big);
    const int64_t start = (int64_t)(loc & 0xFFFF) + c->base, from = payload + start;
    int64_t length = loc >> 16, room = plen - start > 0 ? plen - start : 0;
    if (length > room)
        length = room;
    if (length > nbytes - from)
        length = nbytes - from > 0 ? nbytes - from : 0;
    if (length > 8) {
        c->longer++;
        return 0;
    }
    uint64_t w = 0;
    if (length == 0)
        return 0;
    if (from + 8 <= nbytes) {  /* one load, the bytes past the string masked off (little-endian host) */
        memcpy(&w, data + from, 8);
        return length == 8 ? w : w & ((UINT64_C(1) << (8 * length)) - 1);
    }
    for (int64_t b = 0; b < length; b++)
        w |= (uint64_t)data[from + b] << (8 * b);
    return w;
}

/* Record number r (payload at byte `payload`, plen bytes) into slot s, read while its cache lines are at
   hand (a second pass over a run's records costs a cache miss a record): the bytes of its fixed fields
   (numpy types them from the rows, in cache), and its strings. Returns whether it was taken: not when
   the slot's rows are full (the slot is then given up for the run, count -1: numpy gathers it). */
static int gather_record(const struct zl_plan *plan, int64_t s, const uint8_t *data, int64_t nbytes, int big,
                         int64_t payload, int64_t plen, int64_t r)
{
    if (plan->count[s] < 0)
        return 0;
    if (plan->count[s] >= plan->rows_cap[s]) {
        plan->count[s] = -1;
        return 0;
    }
    const int64_t row = plan->count[s]++, reach = plan->reach[s];
    plan->rec[s][row] = r;
    uint8_t *dst = plan->rows[s] + row * reach;
    if (payload + reach <= nbytes && (reach & 7) == 0) {
        for (int64_t b = 0; b < reach; b += 8)  /* whole words: inlined, no call */
            memcpy(dst + b, data + payload + b, 8);
    } else if (payload + reach <= nbytes) {
        memcpy(dst, data + payload, reach);
    } else {
        for (int64_t b = 0; b < reach; b++)
            dst[b] = payload + b < nbytes ? data[payload + b] : 0;
    }
    for (int64_t k = 0; k < plan->n_strings; k++) {
        struct zl_string *c = &plan->strings[k];
        if (c->slot != s)
            continue;
        const uint64_t w = short_string(data, nbytes, big, payload, plen, c);
        c->out[row] = w;
        if (row && w != c->out[0])
            c->differ = 1;
    }
    return 1;
}

/* Whether a plan can be followed: slots in range, sizes positive (checked once, not per record). */
static int plan_ok(const struct zl_plan *plan)
{
    if (plan->n_slots < 0 || plan->n_slots > 127 || plan->n_strings < 0)
        return 0;
    for (int64_t s = 0; s < plan->n_slots; s++)
        if (plan->reach[s] < 1 || plan->rows_cap[s] < 0 || !plan->rows[s] || !plan->rec[s])
            return 0;
    for (int64_t k = 0; k < plan->n_strings; k++) {
        const struct zl_string *c = &plan->strings[k];
        if (c->slot < 0 || c->slot >= plan->n_slots || c->at < 0 || c->base < 0 || !c->out)
            return 0;
    }
    return 1;
}

/*
 * Walk the records of n_pages pages of `data` (nw 32-bit words; page p starts at byte p * page_size).
 * size[p] is page p's data size (already checked: 0 <= size <= page_size - dstart), ts0[p] its time.
 * Data records go to off/len/ts (at most `cap`), page p's count of them to cnt[p]; what was wrong, at
 * most one per page, to prob as (page, kind, offset in page, record type), counted in *n_prob (at most
 * n_pages). big: the file is big-endian (header bit layout and byte order; the host is little-endian).
 * With type_off >= 0, each data record's 16-bit common_type at payload offset type_off goes to types
 * (bytes past the run read as 0), read while the record's cache line is at hand. With a plan (and
 * type_off >= 0), each data record of an event id the plan names goes into its slot's rows and strings
 * too (read from data's nbytes bytes, nbytes >= nw * 4, 0 past them); a record dropped at the end adds
 * nothing.
 * Returns the number of data records, or -1 if a bound would be passed (the caller then uses numpy).
 */
int64_t zl_walk_pages(const uint8_t *data, int64_t nw, int64_t page_size, int64_t dstart, int big,
                      int64_t n_pages, const int64_t *size, const uint64_t *ts0,
                      int64_t cap, int64_t *off, uint32_t *len, uint64_t *ts, int64_t *cnt,
                      int64_t *prob, int64_t *n_prob, int64_t type_off, uint16_t *types,
                      int64_t nbytes, const struct zl_plan *plan)
{
    int64_t n = 0, np_ = 0;
    if (nw <= 0 || page_size <= 0 || dstart < 0 || n_pages < 0 || n_pages > nw * 4 / page_size)
        return -1;
    if (plan && (type_off < 0 || !types || nbytes < nw * 4 || !plan_ok(plan)))
        return -1;
    if (plan)
        for (int64_t s = 0; s < plan->n_slots; s++)
            plan->count[s] = 0;
    for (int64_t p = 0; p < n_pages; p++) {
        int64_t first = n;
        cnt[p] = 0;
        if (size[p] <= 0)
            continue;
        int64_t base = p * page_size;
        int64_t pos = base + dstart;
        int64_t end = pos + size[p];
        int64_t cap_end = base + page_size;
        uint64_t now = ts0[p];
        int64_t last_slot = -1;  /* the slot of the page's last data record, if the plan took it */
        if (end > cap_end)
            return -1;
        for (;;) {
            int64_t wi = pos >> 2;
            if (wi < 0 || wi >= nw)
                return -1;
            uint32_t hdr = word_at(data, wi, big);
            uint32_t tl = big ? hdr >> 27 : hdr & 31u;
            uint64_t d = big ? hdr & ((1u << 27) - 1) : hdr >> 5;
            /* The word after the header; at the run's last word the numpy walk reads that word again. */
            int64_t a0 = (int64_t)word_at(data, wi + 1 < nw ? wi + 1 : nw - 1, big);
            int is_data = tl <= TYPE_DATA_MAX;
            int64_t hlen = 4, plen = 0, nxt;
            if (is_data) {
                hlen = tl == 0 ? 8 : 4;
                plen = tl == 0 ? ((a0 - 4 + 3) & ~(int64_t)3) : (int64_t)tl * 4;
                nxt = pos + hlen + plen;
            } else {
                nxt = pos + 8;
            }
            if (tl == TYPE_PADDING)  /* delta 0: the rest of the page is empty; else a discarded event */
                nxt = d == 0 ? end : pos + 4 + a0;
            if (tl >= TYPE_TIME_EXTEND)
                d = ((uint64_t)a0 << TS_SHIFT) + d;
            if (tl == TYPE_TIME_STAMP)
                now = d | (now & TS_MSB);
            else
                now += d;
            int broken = (nxt & 3) != 0 || (is_data && plen < 0) || nxt <= pos || (!is_data && nxt > cap_end);
            if (broken) {
                if (np_ >= n_pages)
                    return -1;
                prob[4 * np_] = p;
                prob[4 * np_ + 1] = PROBLEM_BAD_RECORD;
                prob[4 * np_ + 2] = pos - base;
                prob[4 * np_ + 3] = tl;
                np_++;
                is_data = 0;
                nxt = end;
            }
            if (is_data) {
                if (n >= cap)
                    return -1;
                off[n] = pos + hlen;
                len[n] = (uint32_t)plen;
                ts[n] = now;
                if (type_off >= 0 && types) {
                    int64_t at = pos + hlen + type_off, nbytes = nw * 4;
                    uint32_t b0 = at < nbytes ? data[at] : 0, b1 = at + 1 < nbytes ? data[at + 1] : 0;
                    types[n] = (uint16_t)(big ? (b0 << 8) | b1 : (b1 << 8) | b0);
                    last_slot = plan ? plan->slot_of[types[n]] : -1;
                    if (last_slot >= 0 && !gather_record(plan, last_slot, data, nbytes, big, pos + hlen, plen, n))
                        last_slot = -1;
                }
                n++;
            }
            if (nxt < end) {
                pos = nxt;
                continue;
            }
            if (nxt > cap_end && is_data) {  /* the page's last record runs off the page: dropped */
                if (np_ >= n_pages)
                    return -1;
                n--;
                if (last_slot >= 0)
                    plan->count[last_slot]--;
                prob[4 * np_] = p;
                prob[4 * np_ + 1] = PROBLEM_RUNS_OFF;
                prob[4 * np_ + 2] = pos - base;
                prob[4 * np_ + 3] = tl;
                np_++;
            }
            break;
        }
        cnt[p] = n - first;
    }
    *n_prob = np_;
    return n;
}

/* The interface's version: Python loads a library only if it says the version it was written for. */
int64_t zl_pagewalk_version(void)
{
    return 3;
}
