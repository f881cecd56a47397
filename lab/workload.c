/*
 * lab/workload.c: the lab's zone->lock workload, built static by lab/run and run inside the guest.
 *
 * Page churn: N workers (processes, or with -t threads of one process, as the patch's selftest has them),
 * one pinned per CPU, loop: mmap a region with MAP_POPULATE, write one byte per page, munmap it. Every
 * round allocates and frees the region's pages through the per-CPU lists and, once those are shrunk
 * (vm.percpu_pagelist_high_fraction), through zone->lock: rmqueue_bulk and free_pcppages_bulk.
 *
 * Pipe resizing (-P N): N more processes, pinned, loop over F_SETPIPE_SZ to 16 MiB, 1 MiB and 64 KiB
 * with 256 KiB written and read back at each size. Resizing reallocates the pipe's buffer array
 * (40 bytes a slot): 16 MiB = 4096 slots = an order-6 page allocation, freed through free_one_page
 * (orders above 3 bypass the per-CPU lists); 1 MiB = an order-2 one through the per-CPU lists. So all
 * three traced call sites contend, as in the shared fixtures' workload.
 *
 * -l SECONDS: idle lead-in and lead-out around the work (the lab's peer windows start and end there);
 * -o FILE: also write the result line to FILE.
 *
 * Prints one JSON line: {"procs":N,"threads":0|1,"pipers":P,"mb":M,"seconds":S,"rounds":R,
 *   "rounds_per_s":X,"resizes":Z,"mono_ns":{"start":..,"work_start":..,"work_end":..,"end":..}}
 * (mono_ns: CLOCK_MONOTONIC, the clock of bpftrace's nsecs and of the "mono" trace clock).
 * usage: zl-workload [-p PROCS] [-t] [-P PIPERS] [-m MB] [-s SECONDS] [-l LEAD] [-o FILE]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double deadline;
static size_t region;
static int ncpus;

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double now(void)
{
	return mono_ns() / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	while (s > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void pin(int i)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(i % ncpus, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* One page-churn worker: churn until the deadline, return the rounds done. */
static long churn(void)
{
	long page = sysconf(_SC_PAGESIZE), rounds = 0;

	while (now() < deadline) {
		char *p = mmap(NULL, region, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (p == MAP_FAILED) {
			perror("zl-workload: mmap");
			exit(1);
		}
		for (size_t off = 0; off < region; off += page)
			p[off] = 1;
		munmap(p, region);
		rounds++;
	}
	return rounds;
}

/* One pipe resizer: grow and shrink a pipe until the deadline, return the resizes done. */
static long resize_pipes(void)
{
	static const int sizes[] = { 16 << 20, 1 << 20, 64 << 10 };
	static char buf[256 << 10];
	long resizes = 0;
	int fds[2];

	if (pipe(fds) < 0) {
		perror("zl-workload: pipe");
		exit(1);
	}
	memset(buf, 1, sizeof(buf));
	while (now() < deadline) {
		for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t done = 0;

			if (fcntl(fds[1], F_SETPIPE_SZ, sizes[i]) < 0) {
				fprintf(stderr, "zl-workload: F_SETPIPE_SZ %d: %s (above /proc/sys/fs/pipe-max-size it needs CAP_SYS_RESOURCE)\n", sizes[i], strerror(errno));
				exit(1);
			}
			resizes++;
			while (done < sizeof(buf)) {	/* 256 KiB through a 64 KiB pipe: in slices */
				size_t n = sizes[i] < (int)sizeof(buf) ? (size_t)sizes[i] : sizeof(buf);
				ssize_t w = write(fds[1], buf, n), r = 0;

				while (w > 0 && r < w) {
					ssize_t k = read(fds[0], buf, w - r);

					if (k <= 0)
						break;
					r += k;
				}
				if (w <= 0 || r != w) {
					perror("zl-workload: pipe write/read");
					exit(1);
				}
				done += w;
			}
		}
	}
	return resizes;
}

static void *churn_thread(void *arg)
{
	pin((int)(long)arg);
	return (void *)churn();
}

int main(int argc, char **argv)
{
	int procs, pipers = 0, threads = 0, mb = 2, opt, fds[2], failed = 0;
	double seconds = 5.0, lead = 0, took;
	long long t_start, t_work, t_end_work, t_end;
	long total = 0, resizes = 0, r[2];
	const char *out = NULL;
	char line[512];

	ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	procs = ncpus;
	while ((opt = getopt(argc, argv, "p:tP:m:s:l:o:h")) != -1) {
		switch (opt) {
		case 'p': procs = atoi(optarg); break;
		case 't': threads = 1; break;
		case 'P': pipers = atoi(optarg); break;
		case 'm': mb = atoi(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'l': lead = atof(optarg); break;
		case 'o': out = optarg; break;
		default:
			fprintf(stderr, "usage: zl-workload [-p PROCS] [-t] [-P PIPERS] [-m MB] [-s SECONDS] "
				"[-l LEAD] [-o FILE]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (procs <= 0 || pipers < 0 || mb <= 0 || seconds <= 0 || lead < 0) {
		fprintf(stderr, "zl-workload: -p, -m and -s must be positive, -P and -l not negative\n");
		return 2;
	}
	if (pipe(fds) < 0) {
		perror("zl-workload: pipe");
		return 1;
	}
	region = (size_t)mb << 20;
	t_start = mono_ns();
	sleep_s(lead);
	t_work = mono_ns();
	deadline = t_work / 1e9 + seconds;
	/* Children: the pipe resizers, and the churn workers unless they are threads. */
	for (int i = 0; i < pipers + (threads ? 0 : procs); i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("zl-workload: fork");
			return 1;
		}
		if (pid == 0) {
			pin(i);
			r[0] = i < pipers ? 0 : churn();
			r[1] = i < pipers ? resize_pipes() : 0;
			if (write(fds[1], r, sizeof(r)) != sizeof(r))
				_exit(1);
			_exit(0);
		}
	}
	close(fds[1]);
	if (threads) {
		pthread_t *tids = calloc(procs, sizeof(*tids));
		void *ret;

		for (int i = 0; i < procs; i++)
			if (pthread_create(&tids[i], NULL, churn_thread, (void *)(long)i) != 0) {
				fprintf(stderr, "zl-workload: pthread_create failed\n");
				return 1;
			}
		for (int i = 0; i < procs; i++) {
			pthread_join(tids[i], &ret);
			total += (long)ret;
		}
		free(tids);
	}
	while (read(fds[0], r, sizeof(r)) == sizeof(r)) {
		total += r[0];
		resizes += r[1];
	}
	for (int status; wait(&status) > 0;)
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	if (failed) {
		fprintf(stderr, "zl-workload: a worker failed (see above)\n");
		return 1;
	}
	t_end_work = mono_ns();
	took = (t_end_work - t_work) / 1e9;
	sleep_s(lead);
	t_end = mono_ns();
	snprintf(line, sizeof(line),
		 "{\"procs\":%d,\"threads\":%d,\"pipers\":%d,\"mb\":%d,\"seconds\":%.3f,\"rounds\":%ld,"
		 "\"rounds_per_s\":%.3f,\"resizes\":%ld,\"mono_ns\":{\"start\":%lld,\"work_start\":%lld,"
		 "\"work_end\":%lld,\"end\":%lld}}\n",
		 procs, threads, pipers, mb, took, total, total / took, resizes, t_start, t_work, t_end_work, t_end);
	fputs(line, stdout);
	if (out) {
		FILE *f = fopen(out, "w");

		if (!f || fputs(line, f) < 0 || fclose(f) != 0) {
			perror(out);
			return 1;
		}
	}
	return 0;
}
