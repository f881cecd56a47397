/*
 * lab/workload.c: the lab's zone->lock workload, built static by lab/run and run inside the guest.
 * N processes (one pinned per CPU) loop: mmap a region with MAP_POPULATE, write one byte per page,
 * munmap it. Every round allocates and frees the region's pages through the per-CPU lists and,
 * once those are shrunk (vm.percpu_pagelist_high_fraction), through zone->lock.
 *
 * Prints one JSON line: {"procs":N,"mb":M,"seconds":S,"rounds":R,"rounds_per_s":X}
 * usage: zl-workload [-p PROCS] [-m MB] [-s SECONDS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One worker: churn until the deadline, return the rounds done. */
static long churn(size_t size, double deadline)
{
	long page = sysconf(_SC_PAGESIZE), rounds = 0;

	while (now() < deadline) {
		char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (p == MAP_FAILED) {
			perror("zl-workload: mmap");
			exit(1);
		}
		for (size_t off = 0; off < size; off += page)
			p[off] = 1;
		munmap(p, size);
		rounds++;
	}
	return rounds;
}

int main(int argc, char **argv)
{
	int procs = (int)sysconf(_SC_NPROCESSORS_ONLN), mb = 2, opt, fds[2];
	double seconds = 5.0, start, took;
	long total = 0, r;

	while ((opt = getopt(argc, argv, "p:m:s:h")) != -1) {
		switch (opt) {
		case 'p': procs = atoi(optarg); break;
		case 'm': mb = atoi(optarg); break;
		case 's': seconds = atof(optarg); break;
		default:
			fprintf(stderr, "usage: zl-workload [-p PROCS] [-m MB] [-s SECONDS]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (procs <= 0 || mb <= 0 || seconds <= 0) {
		fprintf(stderr, "zl-workload: -p, -m and -s must be positive\n");
		return 2;
	}
	if (pipe(fds) < 0) {
		perror("zl-workload: pipe");
		return 1;
	}
	start = now();
	for (int i = 0; i < procs; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("zl-workload: fork");
			return 1;
		}
		if (pid == 0) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(i % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
			sched_setaffinity(0, sizeof(set), &set);
			r = churn((size_t)mb << 20, start + seconds);
			if (write(fds[1], &r, sizeof(r)) != sizeof(r))
				_exit(1);
			_exit(0);
		}
	}
	close(fds[1]);
	while (read(fds[0], &r, sizeof(r)) == sizeof(r))
		total += r;
	while (wait(NULL) > 0)
		;
	took = now() - start;
	printf("{\"procs\":%d,\"mb\":%d,\"seconds\":%.3f,\"rounds\":%ld,\"rounds_per_s\":%.3f}\n",
	       procs, mb, took, total, total / took);
	return 0;
}
