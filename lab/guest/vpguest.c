/*
 * vpguest: /init and service daemon of the virtpool test guest (one static
 * binary, threads only, so it stays fast under TCG emulation).
 *
 * As PID 1 (/init): mounts proc/sys/dev/run/tmp, loads the modules listed in
 * /lib/modules/order (Debian kernel only), sets the hostname and configures
 * lo + eth0 from the kernel cmdline (virtpool.ip=A.B.C.D/N, virtpool.name=,
 * optional virtpool.gw=, virtpool.seq=1), then runs the services in a child
 * (respawned) and a shell on the serial console, and reaps zombies. With
 * virtpool.app=1 it mounts the disk (/dev/vda, ext2) read-only on /app and
 * runs /app/run too (respawned, output on the console): how a pool member
 * runs an application, e.g. a Nomad client (lab.AppDisk), without putting it
 * in every guest's initramfs.
 *
 * Services (also `vpguest [SEQFILE]` when not PID 1; default /run/seq):
 *   HTTP on :80, one request per connection, one thread per connection:
 *     GET /health                -> "ok"
 *     GET /stream                -> endless body "1\n2\n3\n..." (2 lines / 10 ms)
 *     GET /stream?every=N        -> the same, 2 lines every N*10 ms: a stream that
 *                                   costs an idle TCG guest little CPU
 *     GET /seq                   -> whole seq file (writer appends N\n every 10 ms;
 *                                   as PID 1 only with virtpool.seq=1: its 100
 *                                   wake-ups a second cost an idle TCG guest
 *                                   ~0.06 of a core, 30 times all else)
 *     GET /seq?tail=1            -> last number written to the seq file
 *     GET /seqdisk               -> with virtpool.seqdisk=1 (and a disk), the
 *                                   writer also writes line N to the disk's block
 *                                   N (4 KiB, O_DIRECT, flushed, wrapping) with the time
 *                                   it wrote it, and keeps that time in memory:
 *                                   "checked=C mismatched=M future=F last=L
 *                                   highest=H" (L the last line written, H the
 *                                   highest of the disk's lines ahead of the
 *                                   memory, L if none) compares
 *                                   the disk with the memory: M blocks of lines
 *                                   the memory wrote that the disk holds otherwise
 *                                   (the disk is older), F blocks of lines the
 *                                   memory has not written yet that the disk holds
 *                                   (the disk is newer). A disk consistent with
 *                                   the memory has neither, whatever came between
 *                                   (a checkpoint restored, a migration).
 *     GET /clock                 -> "mono_ns=T lag_us=L": the guest's CLOCK_MONOTONIC,
 *                                   and the longest that the seq writer's wake-ups
 *                                   came more than its 10 ms slice apart since
 *                                   the last /clock (-1 without the writer): a stall of
 *                                   the vCPU while the guest's clock runs. A
 *                                   paused guest's clock stops: that pause shows
 *                                   as mono_ns falling behind the host's clock.
 *     GET /load?cpu=P&mem=M&rate=R&cost=C&page=B&disk_read=DR&disk_write=DW
 *                                -> set load (missing keys keep their value;
 *                                   C: rounds of computation per page dirtied;
 *                                   B: bytes of each page rewritten, 8 (one
 *                                   word, the default) to 4096; DR, DW: MiB/s
 *                                   read from and written to the disk, 409 if
 *                                   a rate > 0 is asked of a guest without one)
 *     GET /stat                  -> load settings, /proc/loadavg, cpu lines of
 *                                   /proc/stat (total + per vCPU), /proc/uptime,
 *                                   the disk and the bytes the disk load moved
 *     GET /ps                    -> "meminfo: total_kib=T available_kib=A", then
 *                                   "PID COMM RSS_KIB" for each process with
 *                                   memory of its own (not kernel threads):
 *                                   what an application in the guest takes
 *     GET /bytes?n=N             -> N bytes of 'x' as fast as the client reads
 *                                   them (network load)
 *     GET /work?n=N              -> runs N rounds of a fixed computation (CPU
 *                                   only), then "n=N ns=T x=X": T the guest's
 *                                   own time for it (R-T6 times it from outside)
 *   TCP :9000: every connection gets an endless "1\n2\n3\n..." (as /stream).
 *
 * Disk load: the raw device /dev/vda (the guest's virtio-blk disk, if it has
 * one), read and written in DISK_CHUNK blocks with O_DIRECT, so that every
 * byte reaches the device (none is served from or left in the page cache),
 * each paced on its own, sequentially over the whole disk (wrapping). Only
 * as PID 1, in the guest: run on a machine whose own disk is /dev/vda,
 * vpguest has no disk.
 *
 * Build: gcc -static -O2 -pthread -o vpguest vpguest.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLICE_NS 10000000L /* pacing / duty-cycle slice: 10 ms */
#define STREAM_LINES 2     /* lines per slice for /stream and :9000 */
#define DISK_CHUNK (64 << 10) /* bytes per disk read or write (O_DIRECT) */

static const char *seq_path = "/run/seq";
static int seq_on = 1; /* as PID 1: virtpool.seq=1 on the kernel cmdline */
static atomic_long seq_last;                  /* last number in seq file */
static int seqdisk_on; /* virtpool.seqdisk=1: the writer writes the disk too */
#define SEQ_BLOCK 4096
static long seq_blocks;        /* blocks of the disk the writer uses */
static long *seq_stamps;       /* by block: the time line N was written there */
static atomic_long seq_lag_ns = -1; /* latest wake-up of the writer since /clock */
static atomic_int load_cpu, load_mem, load_rate; /* %, MiB, MiB/s */
static atomic_int load_cost; /* rounds of computation per page dirtied */
static atomic_int load_page = 8; /* bytes of each dirtied page rewritten */
static atomic_int load_disk[2]; /* MiB/s read from, written to the disk */
static atomic_long disk_done[2]; /* bytes the disk load read, wrote */
static atomic_int disk_errno[2]; /* last error of a read, a write (0: none) */
static const char *disk_path = "/dev/vda";
static int disk_fd = -1;      /* opened O_RDWR | O_DIRECT; -1: no disk */
static long long disk_size;   /* bytes, a multiple of DISK_CHUNK */
static char disk_err[160]; /* why there is none */
static int as_init; /* PID 1 (or its services child): the guest's disk is ours */
static int app_on;  /* virtpool.app=1: the disk holds the application, /app */
static int ncpu = 1;
static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t load_cv = PTHREAD_COND_INITIALIZER;

static long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Advance the absolute deadline *next by one slice and sleep until it. If we
 * fell behind by more than 1 s (e.g. guest paused), restart the schedule
 * instead of bursting to catch up. */
static void pace_by(long *next, long ns) {
  *next += ns;
  long n = now_ns();
  if (n - *next > 1000000000L) *next = n;
  struct timespec t = {*next / 1000000000L, *next % 1000000000L};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {}
}

static void pace(long *next) { pace_by(next, SLICE_NS); }

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* Endless numbered lines on fd, STREAM_LINES every `every` slices; returns
 * when the peer goes away. */
static void stream_lines(int fd, long every) {
  char buf[64];
  long n = 0, next = now_ns();
  for (;;) {
    int len = 0;
    for (int i = 0; i < STREAM_LINES; i++) len += sprintf(buf + len, "%ld\n", ++n);
    if (write_all(fd, buf, (size_t)len) < 0) return;
    pace_by(&next, every * SLICE_NS);
  }
}

/* Background writer: append N\n to the seq file every slice. */
static void *seq_writer(void *arg) {
  (void)arg;
  int fd = open(seq_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (fd < 0) { perror(seq_path); return NULL; }
  long n = 0, next = now_ns();
  char buf[32], *blk = NULL;
  if (seq_blocks > 0 && posix_memalign((void **)&blk, 4096, SEQ_BLOCK) != 0) return NULL;
  atomic_store(&seq_lag_ns, 0);
  for (long woke = next;;) {
    if (blk) { /* the disk first: a line in memory is on the disk too */
      long at = now_ns(), i = (n + 1) % seq_blocks;
      memset(blk, 0, SEQ_BLOCK);
      snprintf(blk, SEQ_BLOCK, "%ld %ld\n", n + 1, at);
      /* flushed, as a database's commit is: else a crash of the QEMU
       * may lose it (qcow2 keeps a new cluster's mapping until a flush) */
      if (pwrite(disk_fd, blk, SEQ_BLOCK, (off_t)i * SEQ_BLOCK) != SEQ_BLOCK || fdatasync(disk_fd) != 0) {
        pace(&next);
        continue; /* tried again next slice */
      }
      seq_stamps[i] = at;
    }
    int len = sprintf(buf, "%ld\n", n + 1);
    if (write_all(fd, buf, (size_t)len) == 0) atomic_store(&seq_last, ++n);
    pace(&next);
    /* how much longer than a slice since the last wake-up */
    long t = now_ns(), late = t - woke - SLICE_NS, prev = atomic_load(&seq_lag_ns);
    woke = t;
    while (late > prev && !atomic_compare_exchange_weak(&seq_lag_ns, &prev, late)) {}
  }
}

/* CPU worker pinned to one vCPU: busy for cpu% of each slice, sleep the rest.
 * Slices are 5..15 ms long at random (10 ms on average): fixed 10 ms slices
 * would be phase-locked with the 100 Hz tick that /proc/stat accounting
 * samples, and the guest would report 0% or 100% instead of cpu%. */
static void *cpu_worker(void *arg) {
  long id = (long)arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET((int)id, &set);
  sched_setaffinity(0, sizeof set, &set);
  volatile unsigned long sink = 0;
  unsigned seed = (unsigned)(id * 7919 + now_ns());
  long start = now_ns();
  for (;;) {
    int p = atomic_load(&load_cpu);
    if (p <= 0) { /* idle: wait for a new setting */
      pthread_mutex_lock(&load_mu);
      while (atomic_load(&load_cpu) <= 0) pthread_cond_wait(&load_cv, &load_mu);
      pthread_mutex_unlock(&load_mu);
      start = now_ns();
      continue;
    }
    long slice = SLICE_NS / 2 + (long)(rand_r(&seed) % 1000) * (SLICE_NS / 1000);
    long busy_until = start + slice * p / 100, end = start + slice;
    while (now_ns() < busy_until)
      for (int i = 0; i < 2000; i++) sink += (unsigned long)i * 2654435761u;
    long n = now_ns();
    if (p < 100 && end > n) {
      struct timespec t = {end / 1000000000L, end % 1000000000L};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {}
    }
    start = end > n - 1000000000L ? end : n; /* no catch-up after a pause */
  }
  return NULL;
}

/* Memory dirtier: keeps a buffer of load_mem MiB and writes to every page,
 * at load_rate MiB/s (0 = as fast as possible), computing load_cost rounds
 * for each page it writes: with a cost, how fast it dirties memory depends
 * on the CPU it gets, as an application's would (auto-converge's throttle
 * then slows it; one store a page it cannot). */
static void *mem_worker(void *arg) {
  (void)arg;
  char *buf = NULL;
  size_t size = 0, pages = 0, pos = 0;
  unsigned long gen = 0;
  long next = now_ns();
  for (;;) {
    size_t want = (size_t)atomic_load(&load_mem) << 20;
    if (want != size) { /* resize: drop the old buffer, map a new one */
      if (buf) munmap(buf, size);
      buf = NULL, size = 0, pages = 0, pos = 0;
      if (want) {
        void *p = mmap(NULL, want, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) buf = p, size = want, pages = want >> 12;
      }
    }
    if (!buf) { /* idle: wait for a new setting */
      pthread_mutex_lock(&load_mu);
      while (atomic_load(&load_mem) == 0) pthread_cond_wait(&load_cv, &load_mu);
      pthread_mutex_unlock(&load_mu);
      next = now_ns();
      continue;
    }
    int rate = atomic_load(&load_rate);
    /* pages per slice: rate MiB/s * 256 pages/MiB / 100 slices/s */
    size_t quota = rate > 0 ? ((size_t)rate * 256 + 99) / 100 : 4096;
    int cost = atomic_load(&load_cost), words = atomic_load(&load_page) / 8;
    for (size_t i = 0; i < quota; i++) {
      unsigned long x = ++gen;
      for (int k = 0; k < cost; k++) x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      volatile unsigned long *w = (volatile unsigned long *)(buf + (pos << 12));
      w[0] = x;
      for (int k = 1; k < words; k++) x ^= x << 13, x ^= x >> 7, x ^= x << 17, w[k] = x;
      if (++pos == pages) pos = 0;
    }
    if (rate > 0) pace(&next);
  }
  return NULL;
}

/* Open the guest's disk for the disk load (as PID 1 only, see above). */
static void disk_open(void) {
  if (!as_init) {
    snprintf(disk_err, sizeof disk_err, "no disk: not the guest's init");
    return;
  }
  if (app_on) {
    snprintf(disk_err, sizeof disk_err, "no disk: %s holds the application (/app)", disk_path);
    return;
  }
  int fd = open(disk_path, O_RDWR | O_DIRECT | O_CLOEXEC);
  off_t end = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);
  if (fd < 0 || end < DISK_CHUNK) {
    snprintf(disk_err, sizeof disk_err, "no disk: %s: %s", disk_path,
             fd < 0 ? strerror(errno) : "smaller than one chunk");
    if (fd >= 0) close(fd);
    return;
  }
  disk_size = (long long)end / DISK_CHUNK * DISK_CHUNK;
  disk_fd = fd;
}

/* Disk worker, arg 0 reads and 1 writes: one DISK_CHUNK at a time at
 * load_disk[arg] MiB/s, each chunk due DISK_CHUNK/rate after the one before
 * (paced like the others: no burst to catch up after a pause). */
static void *disk_worker(void *arg) {
  long w = (long)arg;
  char *buf;
  if (posix_memalign((void **)&buf, 4096, DISK_CHUNK) != 0) return NULL;
  memset(buf, w ? 0x5a : 0, DISK_CHUNK); /* written data: not zeros */
  long long pos = 0;
  long next = now_ns();
  for (;;) {
    int rate = atomic_load(&load_disk[w]);
    if (rate <= 0) { /* idle: wait for a new setting */
      pthread_mutex_lock(&load_mu);
      while (atomic_load(&load_disk[w]) <= 0) pthread_cond_wait(&load_cv, &load_mu);
      pthread_mutex_unlock(&load_mu);
      next = now_ns();
      continue;
    }
    ssize_t n = w ? pwrite(disk_fd, buf, DISK_CHUNK, (off_t)pos)
                  : pread(disk_fd, buf, DISK_CHUNK, (off_t)pos);
    if (n > 0) atomic_fetch_add(&disk_done[w], (long)n);
    else atomic_store(&disk_errno[w], n < 0 ? errno : EIO);
    if ((pos += DISK_CHUNK) >= disk_size) pos = 0;
    pace_by(&next, (long)((long long)DISK_CHUNK * 1000000000LL / ((long long)rate << 20)));
  }
  return NULL;
}

/* Integer value of key in a query string, or -1 if absent. */
static long query_int(const char *q, const char *key) {
  size_t kl = strlen(key);
  for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
    if (!strncmp(p, key, kl) && p[kl] == '=') return strtol(p + kl + 1, NULL, 10);
  return -1;
}

static long mem_avail_mib(void) {
  char line[128];
  long kb = 0;
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb >> 10;
}

/* Append up to max bytes of a small /proc file (or its first line) to out. */
static int cat_file(char *out, int max, const char *path, int first_line) {
  int fd = open(path, O_RDONLY), n = 0;
  if (fd < 0) return 0;
  n = (int)read(fd, out, (size_t)max - 1);
  close(fd);
  if (n < 0) n = 0;
  out[n] = 0;
  if (first_line && strchr(out, '\n')) n = (int)(strchr(out, '\n') - out) + 1;
  return n;
}

static void reply(int fd, const char *status, const char *body, size_t len) {
  char hdr[256];
  int h = snprintf(hdr, sizeof hdr,
                   "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, len);
  if (write_all(fd, hdr, (size_t)h) == 0) write_all(fd, body, len);
}

static void *http_conn(void *arg) {
  int fd = (int)(long)arg;
  char req[2048], body[2048], path[512];
  int n = 0, b = 0;
  /* read until end of headers (we only need the request line) */
  while (n < (int)sizeof req - 1) {
    ssize_t r = read(fd, req + n, sizeof req - 1 - (size_t)n);
    if (r <= 0) break;
    n += (int)r;
    req[n] = 0;
    if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
  }
  req[n] = 0;
  if (sscanf(req, "GET %511s", path) != 1) {
    reply(fd, "400 Bad Request", "bad request\n", 12);
    goto out;
  }
  char *q = strchr(path, '?');
  if (q) *q++ = 0;
  if (!strcmp(path, "/health")) {
    reply(fd, "200 OK", "ok", 2);
  } else if (!strcmp(path, "/stream")) {
    const char *h = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    long every = q ? query_int(q, "every") : -1;
    if (write_all(fd, h, strlen(h)) == 0) stream_lines(fd, every > 0 ? every : 1);
  } else if (!strcmp(path, "/seq") && q && query_int(q, "tail") > 0) {
    b = sprintf(body, "%ld\n", atomic_load(&seq_last));
    reply(fd, "200 OK", body, (size_t)b);
  } else if (!strcmp(path, "/seqdisk")) {
    if (seq_blocks <= 0) {
      b = sprintf(body, "no disk sequence: boot with virtpool.seqdisk=1 and a disk\n");
      reply(fd, "409 Conflict", body, (size_t)b);
      goto out;
    }
    char *blk;
    if (posix_memalign((void **)&blk, 4096, SEQ_BLOCK) != 0) {
      reply(fd, "500 Internal Server Error", "no memory\n", 10);
      goto out;
    }
    /* Lines up to last were written, disk first, before last was read:
     * their blocks must hold them with their times; a block of a line not
     * written yet that holds it comes from a disk ahead of the memory. */
    /* The SEQ_CHECK lines after the last (ahead of the writer, which
     * overwrites them one by one: first), then the last SEQ_CHECK (20 s). */
    enum { SEQ_CHECK = 2000 };
    long last = atomic_load(&seq_last), checked = 0, mismatched = 0, future = 0, highest = last;
    long from = last - SEQ_CHECK + 1 > 1 ? last - SEQ_CHECK + 1 : 1;
    for (long j = last + 1; j <= last + SEQ_CHECK && j < from + seq_blocks; j++) {
      long i = j % seq_blocks, got = 0, at = 0;
      if (pread(disk_fd, blk, SEQ_BLOCK, (off_t)i * SEQ_BLOCK) != SEQ_BLOCK) { mismatched++; continue; }
      blk[63] = 0;
      sscanf(blk, "%ld %ld", &got, &at);
      if (got != j || at == seq_stamps[i]) continue;
      /* the writer's line in flight (on the disk, its time not kept yet)
       * looks so for a moment: look again once it is done */
      if (j <= atomic_load(&seq_last) + 1) usleep(30000);
      if (j > atomic_load(&seq_last) || at != seq_stamps[i]) {
        future++; /* j was written on this disk, not by this memory */
        if (j > highest) highest = j;
      }
    }
    for (long j = from; j <= last; j++) {
      long i = j % seq_blocks, got = 0, at = 0;
      checked++;
      if (pread(disk_fd, blk, SEQ_BLOCK, (off_t)i * SEQ_BLOCK) != SEQ_BLOCK) { mismatched++; continue; }
      blk[63] = 0;
      sscanf(blk, "%ld %ld", &got, &at);
      if (got != j || at != seq_stamps[i]) mismatched++;
    }
    free(blk);
    b = sprintf(body, "checked=%ld mismatched=%ld future=%ld last=%ld highest=%ld\n", checked, mismatched, future, last, highest);
    reply(fd, "200 OK", body, (size_t)b);
  } else if (!strcmp(path, "/clock")) {
    long lag = atomic_load(&seq_lag_ns);
    if (lag >= 0) lag = atomic_exchange(&seq_lag_ns, 0);
    b = sprintf(body, "mono_ns=%ld lag_us=%ld\n", now_ns(), lag < 0 ? -1 : lag / 1000);
    reply(fd, "200 OK", body, (size_t)b);
  } else if (!strcmp(path, "/seq")) {
    /* send a snapshot: the first st_size bytes (always whole lines) */
    int sf = open(seq_path, O_RDONLY);
    struct stat st;
    if (sf < 0 || fstat(sf, &st) < 0) {
      reply(fd, "500 Internal Server Error", "no seq\n", 7);
    } else {
      char hdr[256], chunk[65536];
      int h = snprintf(hdr, sizeof hdr,
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                       "Content-Length: %lld\r\nConnection: close\r\n\r\n",
                       (long long)st.st_size);
      off_t left = st.st_size;
      if (write_all(fd, hdr, (size_t)h) == 0)
        while (left > 0) {
          ssize_t r = read(sf, chunk, left < (off_t)sizeof chunk ? (size_t)left : sizeof chunk);
          if (r <= 0 || write_all(fd, chunk, (size_t)r) < 0) break;
          left -= r;
        }
    }
    if (sf >= 0) close(sf);
  } else if (!strcmp(path, "/load")) {
    long c = q ? query_int(q, "cpu") : -1, m = q ? query_int(q, "mem") : -1,
         r = q ? query_int(q, "rate") : -1, k = q ? query_int(q, "cost") : -1,
         pg = q ? query_int(q, "page") : -1,
         dr = q ? query_int(q, "disk_read") : -1, dw = q ? query_int(q, "disk_write") : -1;
    if ((dr > 0 || dw > 0) && disk_fd < 0) { /* nothing applied */
      b = sprintf(body, "%s\n", disk_err);
      reply(fd, "409 Conflict", body, (size_t)b);
      goto out;
    }
    pthread_mutex_lock(&load_mu);
    if (dr >= 0) atomic_store(&load_disk[0], (int)dr);
    if (dw >= 0) atomic_store(&load_disk[1], (int)dw);
    if (k >= 0) atomic_store(&load_cost, (int)k);
    if (pg >= 0) atomic_store(&load_page, pg < 8 ? 8 : pg > 4096 ? 4096 : (int)pg);
    if (c >= 0) atomic_store(&load_cpu, c > 100 ? 100 : (int)c);
    if (r >= 0) atomic_store(&load_rate, (int)r);
    if (m >= 0) { /* never ask for more than the guest can give */
      long cap = mem_avail_mib() + atomic_load(&load_mem) - 24;
      if (m > cap) m = cap < 0 ? 0 : cap;
      atomic_store(&load_mem, (int)m);
    }
    pthread_cond_broadcast(&load_cv);
    pthread_mutex_unlock(&load_mu);
    b = sprintf(body, "cpu=%d mem=%d rate=%d workers=%d disk_read=%d disk_write=%d\n",
                atomic_load(&load_cpu), atomic_load(&load_mem), atomic_load(&load_rate), ncpu,
                atomic_load(&load_disk[0]), atomic_load(&load_disk[1]));
    reply(fd, "200 OK", body, (size_t)b);
  } else if (!strcmp(path, "/bytes")) {
    long n = q ? query_int(q, "n") : -1;
    if (n < 0) n = 0;
    char xs[16384];
    memset(xs, 'x', sizeof xs);
    int h = snprintf(body, sizeof body,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %ld\r\nConnection: close\r\n\r\n", n);
    if (write_all(fd, body, (size_t)h) == 0)
      for (long left = n; left > 0;) {
        size_t k = left < (long)sizeof xs ? (size_t)left : sizeof xs;
        if (write_all(fd, xs, k) < 0) break;
        left -= (long)k;
      }
  } else if (!strcmp(path, "/work")) {
    long n = q ? query_int(q, "n") : -1;
    if (n <= 0) n = 1000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long long x = 88172645463325252ULL; /* xorshift64: no memory traffic */
    for (long i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    b = sprintf(body, "n=%ld ns=%lld x=%llu\n", n, ns, x); /* x printed: the loop is kept */
    reply(fd, "200 OK", body, (size_t)b);
  } else if (!strcmp(path, "/ps")) {
    char mi[4096];
    long total = -1, avail = -1;
    cat_file(mi, sizeof mi, "/proc/meminfo", 0);
    char *t = strstr(mi, "MemTotal:"), *a = strstr(mi, "MemAvailable:");
    if (t) total = atol(t + 9);
    if (a) avail = atol(a + 13);
    b = sprintf(body, "meminfo: total_kib=%ld available_kib=%ld\n", total, avail);
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) && b < (int)sizeof body - 128;) {
      int pid = atoi(e->d_name);
      if (pid <= 0) continue;
      char f[64], st[512], comm[64] = "?";
      long size = 0, rss = 0;
      snprintf(f, sizeof f, "/proc/%d/statm", pid);
      cat_file(st, sizeof st, f, 0);
      if (sscanf(st, "%ld %ld", &size, &rss) != 2 || rss == 0) continue;
      snprintf(f, sizeof f, "/proc/%d/stat", pid);
      cat_file(st, sizeof st, f, 0);
      char *l = strchr(st, '('), *r = strrchr(st, ')');
      if (l && r && r > l) snprintf(comm, sizeof comm, "%.*s", (int)(r - l - 1), l + 1);
      b += sprintf(body + b, "%d %s %ld\n", pid, comm, rss * 4);
    }
    if (d) closedir(d);
    reply(fd, "200 OK", body, (size_t)b);
  } else if (!strcmp(path, "/stat")) {
    b = sprintf(body, "load: cpu=%d mem=%d rate=%d workers=%d disk_read=%d disk_write=%d\nloadavg: ",
                atomic_load(&load_cpu), atomic_load(&load_mem), atomic_load(&load_rate), ncpu,
                atomic_load(&load_disk[0]), atomic_load(&load_disk[1]));
    b += cat_file(body + b, 256, "/proc/loadavg", 1);
    /* "stat: cpu ..." = aggregate line of /proc/stat, then one per vCPU */
    char ps[1024], *line = ps, *nl;
    cat_file(ps, sizeof ps, "/proc/stat", 0);
    for (int i = 0; i <= ncpu && (nl = strchr(line, '\n')); i++, line = nl + 1)
      b += i ? sprintf(body + b, "stat_cpu%d: %.*s\n", i - 1, (int)(nl - line), line)
             : sprintf(body + b, "stat: %.*s\n", (int)(nl - line), line);
    b += sprintf(body + b, "uptime: ");
    b += cat_file(body + b, 256, "/proc/uptime", 1);
    b += sprintf(body + b, "seq: %ld\n", atomic_load(&seq_last));
    /* "disk: PATH bytes=SIZE read=R written=W": R, W the bytes the disk
     * load moved since boot (and the last error of each, if any) */
    if (disk_fd < 0) {
      b += sprintf(body + b, "disk: none (%s)\n", disk_err);
    } else {
      b += sprintf(body + b, "disk: %s bytes=%lld read=%ld written=%ld", disk_path, disk_size,
                   atomic_load(&disk_done[0]), atomic_load(&disk_done[1]));
      for (int w = 0; w < 2; w++)
        if (atomic_load(&disk_errno[w]))
          b += sprintf(body + b, " %s_error=%s", w ? "write" : "read", strerror(atomic_load(&disk_errno[w])));
      b += sprintf(body + b, "\n");
    }
    reply(fd, "200 OK", body, (size_t)b);
  } else {
    reply(fd, "404 Not Found", "not found\n", 10);
  }
out:
  close(fd);
  return NULL;
}

static void *tcp_conn(void *arg) {
  int fd = (int)(long)arg;
  stream_lines(fd, 1);
  close(fd);
  return NULL;
}

static int listen_on(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 64) < 0) {
    perror("listen");
    exit(1);
  }
  return s;
}

static int spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&at, 256 << 10);
  int rc = pthread_create(&t, &at, fn, arg);
  pthread_attr_destroy(&at);
  return rc;
}

/* Accept loop on a listening socket: one detached thread per connection. */
static int tcp_listener; /* :9000 */
static void *acceptor(void *arg) {
  int s = (int)(long)arg, one = 1;
  for (;;) {
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (spawn(s == tcp_listener ? tcp_conn : http_conn, (void *)(long)c) != 0) close(c);
  }
  return NULL;
}

static void services(void) {
  signal(SIGPIPE, SIG_IGN);
  ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  disk_open();
  if (seq_on && seqdisk_on && disk_fd >= 0) { /* the disk is the sequence's, not the disk load's */
    seq_blocks = disk_size / SEQ_BLOCK;
    seq_stamps = calloc((size_t)seq_blocks, sizeof *seq_stamps);
    if (!seq_stamps) seq_blocks = 0;
  }
  if (seq_on) spawn(seq_writer, NULL);
  spawn(mem_worker, NULL);
  if (disk_fd >= 0 && seq_blocks == 0) spawn(disk_worker, (void *)0L), spawn(disk_worker, (void *)1L);
  for (long i = 0; i < ncpu; i++) spawn(cpu_worker, (void *)i);
  /* Both sockets listen before either accepts: once /health answers, :9000
   * does too (a client that follows the stream right after is not refused). */
  tcp_listener = listen_on(9000);
  int http = listen_on(80);
  spawn(acceptor, (void *)(long)tcp_listener);
  acceptor((void *)(long)http);
}

/* ------------------------------------------------------------ PID 1 part */

static void console(const char *fmt, const char *a, const char *b) {
  int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
  if (fd >= 0) dprintf(fd, fmt, a, b), close(fd);
}

/* ifconfig: set address/prefix (if addr) and bring the interface up. */
static int if_up(const char *ifname, const char *addr, int prefix) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;
  struct ifreq ifr = {0};
  strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
  if (addr) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &sin->sin_addr);
    rc |= ioctl(s, SIOCSIFADDR, &ifr);
    sin->sin_addr.s_addr = htonl(prefix ? ~0u << (32 - prefix) : 0);
    rc |= ioctl(s, SIOCSIFNETMASK, &ifr);
  }
  rc |= ioctl(s, SIOCGIFFLAGS, &ifr);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  rc |= ioctl(s, SIOCSIFFLAGS, &ifr);
  close(s);
  return rc;
}

static void add_default_route(const char *gw) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct rtentry rt = {0};
  struct sockaddr_in *g = (struct sockaddr_in *)&rt.rt_gateway;
  g->sin_family = AF_INET;
  inet_pton(AF_INET, gw, &g->sin_addr);
  ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
  ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  if (ioctl(s, SIOCADDRT, &rt) < 0) console("vpguest: route via %s failed%s\n", gw, "");
  close(s);
}

static void system_setup(void) {
  mount("proc", "/proc", "proc", 0, NULL);
  mount("sys", "/sys", "sysfs", 0, NULL);
  mount("dev", "/dev", "devtmpfs", 0, NULL);
  mount("run", "/run", "tmpfs", 0, "mode=755");
  mount("tmp", "/tmp", "tmpfs", 0, NULL);

  /* Debian kernel: virtio modules, one name per line, in dependency order */
  FILE *f = fopen("/lib/modules/order", "r");
  char name[128], path[256];
  while (f && fscanf(f, "%127s", name) == 1) {
    snprintf(path, sizeof path, "/lib/modules/%s.ko", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0)
      console("vpguest: cannot load %s: %s\n", name, strerror(errno));
    if (fd >= 0) close(fd);
  }
  if (f) fclose(f);

  /* kernel cmdline: virtpool.ip=A.B.C.D/N virtpool.name=H virtpool.gw=G */
  static char cmdline[4096];
  char *ip = NULL, *host = "guest", *gw = NULL;
  int fd = open("/proc/cmdline", O_RDONLY), n = fd < 0 ? 0 : (int)read(fd, cmdline, sizeof cmdline - 1);
  if (fd >= 0) close(fd);
  cmdline[n > 0 ? n : 0] = 0;
  for (char *save, *t = strtok_r(cmdline, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
    if (!strncmp(t, "virtpool.ip=", 12)) ip = t + 12;
    if (!strncmp(t, "virtpool.name=", 14)) host = t + 14;
    if (!strncmp(t, "virtpool.gw=", 12)) gw = t + 12;
    if (!strncmp(t, "virtpool.seq=", 13)) seq_on = atoi(t + 13) == 1;
    if (!strncmp(t, "virtpool.seqdisk=", 17)) seqdisk_on = atoi(t + 17) == 1;
    if (!strncmp(t, "virtpool.app=", 13)) app_on = atoi(t + 13) == 1;
  }
  if (app_on) {
    mkdir("/app", 0755);
    if (mount(disk_path, "/app", "ext2", MS_RDONLY | MS_NOATIME, NULL) != 0)
      console("vpguest: cannot mount %s on /app: %s\n", disk_path, strerror(errno)), app_on = 0;
  }
  sethostname(host, strlen(host));
  if_up("lo", "127.0.0.1", 8);
  /* eth0 normally exists already (probe is synchronous); wait up to 2 s */
  for (int i = 0; i < 100 && access("/sys/class/net/eth0", F_OK) != 0; i++) usleep(20000);
  int prefix = 24;
  if (ip && strchr(ip, '/')) prefix = atoi(strchr(ip, '/') + 1), *strchr(ip, '/') = 0;
  /* Announce the address when eth0 comes up (gratuitous ARP), as a guest
   * using DHCP would by its broadcasts: a guest restarted on another host
   * (HA restart) is then found there at once, not once switches and
   * neighbours have forgotten where it was. */
  fd = open("/proc/sys/net/ipv4/conf/eth0/arp_notify", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) (void)!write(fd, "1", 1), close(fd);
  if (if_up("eth0", ip, prefix) != 0) console("vpguest: eth0 setup failed (ip=%s)%s\n", ip ? ip : "", "");
  if (gw) add_default_route(gw);
  char up[32] = "?";
  fd = open("/proc/uptime", O_RDONLY);
  if (fd >= 0) n = (int)read(fd, up, sizeof up - 1), up[n > 0 ? n : 0] = 0, close(fd);
  if (strchr(up, ' ')) *strchr(up, ' ') = 0;
  console("virtpool-guest: network up, uptime %ss, host %s\n", up, host);
}

enum { SERVICES, SHELL, APP };

static pid_t start(int what) {
  pid_t p = fork();
  if (p != 0) return p;
  setsid();
  if (what == APP) { /* /app/run, its output on the console */
    int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
    setenv("PATH", "/bin", 1);
    setenv("HOME", "/", 1);
    execl("/bin/sh", "sh", "/app/run", (char *)NULL);
    _exit(127);
  }
  if (what == SHELL) { /* interactive shell on the serial console */
    int fd = open("/dev/ttyS0", O_RDWR);
    if (fd < 0) fd = open("/dev/console", O_RDWR);
    ioctl(fd, TIOCSCTTY, 1);
    dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
    if (fd > 2) close(fd);
    setenv("PATH", "/bin", 1);
    setenv("HOME", "/", 1);
    execl("/bin/sh", "-sh", (char *)NULL);
    _exit(127);
  }
  services();
  _exit(1);
}

int main(int argc, char **argv) {
  if (argc > 1) seq_path = argv[1];
  if (getpid() != 1) {
    services();
    return 1;
  }
  seq_on = 0; /* unless the cmdline says virtpool.seq=1 (system_setup) */
  as_init = 1;
  system_setup();
  pid_t svc = start(SERVICES), sh = start(SHELL), app = app_on ? start(APP) : -1;
  for (;;) { /* reap everything; respawn what died (after 1 s) */
    pid_t p = wait(NULL);
    if (p < 0) { sleep(1); continue; }
    if (p == svc) console("vpguest: services died, restarting%s%s\n", "", ""), sleep(1), svc = start(SERVICES);
    if (p == sh) sleep(1), sh = start(SHELL);
    if (p == app) console("vpguest: /app/run exited, restarting%s%s\n", "", ""), sleep(1), app = start(APP);
  }
}
