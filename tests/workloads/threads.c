// SPDX-License-Identifier: GPL-2.0-only
/*
 * Stress workload for the kmlink VM tests: spawns N threads (default 1000)
 * that each touch an 8 KiB heap buffer, then joins them. Thread creation
 * drives the kernel's task, stack and signal allocations; the heap buffer
 * drives page faults. Built statically on the host by the test.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *worker(void *arg)
{
	char *buf = malloc(8192);

	if (buf) {
		memset(buf, (int)(long)arg, 8192);
		free(buf);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	pthread_t *tids = calloc((size_t)n, sizeof(*tids));
	int started = 0;

	if (!tids)
		return 1;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&tids[i], NULL, worker, (void *)(long)i) != 0)
			break;
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	printf("threads: %d of %d ran\n", started, n);
	free(tids);
	return started == n ? 0 : 1;
}
