/*
 * zlperf's one native part: the ring-buffer page walk of ringbuffer.decode_pages, record by record.
 *
 * The numpy walk advances all pages in lockstep, one numpy pass per record position; this walks each
 * page once in plain C. Same semantics to the bit (kernel/trace/ring_buffer.c record headers, read as
 * libtraceevent's kbuffer-parse.c reads them); the Python side keeps the page headers, the lost-event
 * counts and the stream positions. tests/test_native_walk.py checks it record by record against the
 * numpy walk on real and mutated pages, and the readers' tests check both against libtracecmd.
 *
 * Loaded with ctypes (no Python API, so any python3 that runs zlperf, perf's embedded one included,
 * can use the same library). Every read is bounds-checked against the caller's sizes: a hostile file
 * can make a record invalid, never a read outside `words` or a write past an output array.
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

/*
 * Walk the records of n_pages pages of `data` (nw 32-bit words; page p starts at byte p * page_size).
 * size[p] is page p's data size (already checked: 0 <= size <= page_size - dstart), ts0[p] its time.
 * Data records go to off/len/ts (at most `cap`), page p's count of them to cnt[p]; what was wrong, at
 * most one per page, to prob as (page, kind, offset in page, record type), counted in *n_prob (at most
 * n_pages). big: the file is big-endian (header bit layout and byte order; the host is little-endian).
 * With type_off >= 0, each data record's 16-bit common_type at payload offset type_off goes to types
 * (bytes past the run read as 0), read while the record's cache line is at hand.
 * Returns the number of data records, or -1 if a bound would be passed (the caller then uses numpy).
 */
int64_t zl_walk_pages(const uint8_t *data, int64_t nw, int64_t page_size, int64_t dstart, int big,
                      int64_t n_pages, const int64_t *size, const uint64_t *ts0,
                      int64_t cap, int64_t *off, uint32_t *len, uint64_t *ts, int64_t *cnt,
                      int64_t *prob, int64_t *n_prob, int64_t type_off, uint16_t *types)
{
    int64_t n = 0, np_ = 0;
    if (nw <= 0 || page_size <= 0 || dstart < 0 || n_pages < 0 || n_pages > nw * 4 / page_size)
        return -1;
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
    return 2;
}
