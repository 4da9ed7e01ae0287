// SPDX-License-Identifier: GPL-2.0-only
/*
 * Leak workload for the kmlink VM tests: `hold N SECONDS MARKER` creates N
 * pipes (each a struct pipe_inode_info and its buffer array, allocated in
 * the kernel's alloc_pipe_info(), plus inode, dentry and two files),
 * creates MARKER to say they are held, keeps them for SECONDS, then closes
 * them all and exits. Built statically on the host by the test.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	int secs = argc > 2 ? atoi(argv[2]) : 5;
	const char *marker = argc > 3 ? argv[3] : "/tmp/held";
	int *fds = calloc((size_t)n * 2, sizeof(int));
	int i, fd;

	if (!fds || n < 1)
		return 1;
	for (i = 0; i < n; i++) {
		if (pipe(&fds[2 * i])) {
			perror("pipe");
			return 1;
		}
	}
	fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(marker);
		return 1;
	}
	close(fd);
	sleep((unsigned int)secs);
	for (i = 0; i < 2 * n; i++)
		close(fds[i]);
	return 0;
}
