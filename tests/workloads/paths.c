// SPDX-License-Identifier: GPL-2.0-only
/*
 * The monitor tests' workload: one process (no threads: the comparison is
 * per process) that drives every allocator entry point the kmem
 * tracepoints see, so that a path the monitor misses shows up as a count
 * difference at its call site:
 *
 *   - seq_file reads of small /proc files (seq_read_iter's buffer:
 *     kvmalloc, inlined into __kvmalloc_node_noprof on 6.16+);
 *   - an fd table grown past 64k descriptors (kvmalloc, large) and
 *     select() over it (kvmalloc of the bitmaps, small and large);
 *   - writev() with 1024 iovecs (kmalloc of 16 KiB: the large-kmalloc path);
 *   - pipes filled with 64 KiB (page allocations, kmem_cache_alloc);
 *   - fork() (node-local allocations: task_struct, stacks, page tables);
 *   - mmap/munmap (maple tree nodes: bulk allocations where the kernel
 *     uses them, which fire no per-object tracepoint);
 *   - a walk of a sysfs tree (dentries, inodes: kmem_cache_alloc_lru).
 *
 * Usage: paths [ITERATIONS] [DIR]
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG_FD 65000
#define IOVECS 1024

static char buf[65536];

static void walk(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	if (!d)
		return;
	while ((e = readdir(d))) {
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && depth < 8)
			walk(path, depth + 1);
	}
	closedir(d);
}

static void read_small(const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return;
	while (read(fd, buf, 512) > 0)
		;
	close(fd);
}

/* select() over the first n descriptors, none ready, no waiting. */
static void select_over(int n)
{
	static unsigned long bits[3][BIG_FD / (8 * sizeof(unsigned long)) + 1];
	struct timeval tv = { 0, 0 };

	memset(bits, 0, sizeof(bits));
	select(n, (fd_set *)bits[0], (fd_set *)bits[1], (fd_set *)bits[2], &tv);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100;
	const char *dir = argc > 2 ? argv[2] : "/sys/devices";
	struct rlimit rl = { BIG_FD + 1, BIG_FD + 1 };
	static struct iovec iov[IOVECS];
	int devnull = open("/dev/null", O_WRONLY);

	if (devnull < 0)
		return 1;
	for (int i = 0; i < IOVECS; i++) {
		iov[i].iov_base = buf;
		iov[i].iov_len = 1;
	}
	walk(dir, 0);
	/* Grows the fd table to 64k entries (kvmalloc'd arrays). */
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && dup2(devnull, BIG_FD - 1) < 0)
		return 2;
	for (long i = 0; i < n; i++) {
		int fd[2];
		pid_t pid;
		void *p;

		read_small("/proc/self/stat");
		read_small("/proc/version");
		read_small("/proc/self/mounts");
		select_over(2000);
		select_over(BIG_FD);
		if (writev(devnull, iov, IOVECS) < 0)
			return 3;
		if (pipe(fd) != 0)
			return 4;
		if (write(fd[1], buf, sizeof(buf)) < 0 || read(fd[0], buf, sizeof(buf)) < 0)
			return 5;
		close(fd[0]);
		close(fd[1]);
		p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 6;
		memset(p, 1, 1 << 16);
		munmap(p, 1 << 20);
		pid = fork();
		if (pid < 0)
			return 7;
		if (pid == 0)
			_exit(0);
		waitpid(pid, NULL, 0);
	}
	printf("paths: %ld iterations\n", n);
	return 0;
}
