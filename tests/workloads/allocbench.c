// SPDX-License-Identifier: GPL-2.0-only
/*
 * Allocation microbenchmark for kmlink's overhead measurement: each
 * iteration creates and closes a pipe (a handful of slab allocations and
 * frees: files, inode, pipe buffers). Prints the best of R rounds of N
 * iterations in ns per iteration, so one noisy round does not count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	double best = -1;

	for (int r = 0; r < rounds; r++) {
		double t0 = now_ns();

		for (long i = 0; i < n; i++) {
			int fd[2];

			if (pipe(fd) != 0)
				return 1;
			close(fd[0]);
			close(fd[1]);
		}
		double per = (now_ns() - t0) / n;

		if (best < 0 || per < best)
			best = per;
	}
	printf("%.0f\n", best);
	return 0;
}
