// One-off measurement for bench/brickio-uring-vs-pool.md: the raw syscall floor of our
// brick write patterns, done (a) with plain pwrite/fdatasync on the calling thread and
// (b) with io_uring (one ring, linked write + fsync(DATASYNC) SQEs). The pool path as the
// addon really runs it is measured from Node by pool.mjs; this program has no napi.
//
// Build: g++ -std=c++20 -O2 uring.cc -luring -o uring
// Usage: uring <dir on the test filesystem>
#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t k4K = 4096, k1M = 1 << 20;
constexpr int kSyncOps = 2000;
constexpr size_t kSeqBytes = 192 * k1M;

void Die(const char* what, int err) {
  std::fprintf(stderr, "%s: %s\n", what, std::strerror(err));
  std::exit(1);
}

int OpenFresh(const std::string& path, size_t preallocate) {
  unlink(path.c_str());
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) Die("open", errno);
  if (preallocate) {
    // Written (not fallocated) so later overwrites need no allocation or unwritten-extent
    // conversion: the pattern of a preallocated, reused write log.
    std::vector<char> zero(k1M, 1);
    for (size_t off = 0; off < preallocate; off += k1M) {
      if (pwrite(fd, zero.data(), k1M, off) != (ssize_t)k1M) Die("pwrite", errno);
    }
    if (fsync(fd) != 0) Die("fsync", errno);
  }
  return fd;
}

void Report(const char* name, std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  std::printf("%-34s n=%-5zu mean %7.1f us  p50 %7.1f  p99 %7.1f\n", name, us.size(), sum / us.size(),
              us[us.size() / 2], us[us.size() * 99 / 100]);
}

double Since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

void Sync4k(const std::string& dir) {
  int fd = OpenFresh(dir + "/sync4k", 64 * k1M);
  alignas(4096) static char buf[k4K];
  std::memset(buf, 0xab, sizeof buf);
  std::vector<double> us;
  for (int i = 0; i < kSyncOps; i++) {
    auto t0 = Clock::now();
    if (pwrite(fd, buf, k4K, (i * k4K) % (64 * k1M)) != (ssize_t)k4K) Die("pwrite", errno);
    if (fdatasync(fd) != 0) Die("fdatasync", errno);
    us.push_back(Since(t0));
  }
  Report("direct pwrite+fdatasync 4K QD1", us);
  close(fd);
  unlink((dir + "/sync4k").c_str());  // the 320 MiB test filesystem holds one case at a time
}

void Uring4k(const std::string& dir) {
  int fd = OpenFresh(dir + "/uring4k", 64 * k1M);
  io_uring ring;
  if (int rc = io_uring_queue_init(8, &ring, 0); rc < 0) Die("io_uring_queue_init", -rc);
  alignas(4096) static char buf[k4K];
  std::memset(buf, 0xcd, sizeof buf);
  std::vector<double> us;
  for (int i = 0; i < kSyncOps; i++) {
    auto t0 = Clock::now();
    io_uring_sqe* w = io_uring_get_sqe(&ring);
    io_uring_prep_write(w, fd, buf, k4K, (i * k4K) % (64 * k1M));
    w->flags |= IOSQE_IO_LINK;  // fsync only after the write completed
    io_uring_sqe* s = io_uring_get_sqe(&ring);
    io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC);
    if (int rc = io_uring_submit_and_wait(&ring, 2); rc < 0) Die("io_uring_submit_and_wait", -rc);
    for (int c = 0; c < 2; c++) {
      io_uring_cqe* cqe;
      if (int rc = io_uring_wait_cqe(&ring, &cqe); rc < 0) Die("io_uring_wait_cqe", -rc);
      if (cqe->res < 0) Die("cqe", -cqe->res);
      io_uring_cqe_seen(&ring, cqe);
    }
    us.push_back(Since(t0));
  }
  Report("io_uring write+fsync linked 4K QD1", us);
  io_uring_queue_exit(&ring);
  close(fd);
  unlink((dir + "/uring4k").c_str());
}

void Seq1mDirect(const std::string& dir) {
  int fd = OpenFresh(dir + "/seq-direct", 0);
  std::vector<char> buf(k1M, 0x5a);
  auto t0 = Clock::now();
  for (size_t off = 0; off < kSeqBytes; off += k1M) {
    ssize_t n = pwrite(fd, buf.data(), k1M, off);
    if (n != (ssize_t)k1M) Die("pwrite", n < 0 ? errno : EIO);
  }
  double writeUs = Since(t0);
  if (fdatasync(fd) != 0) Die("fdatasync", errno);
  double totalUs = Since(t0);
  std::printf("%-34s %6.0f MiB/s buffered, %6.0f MiB/s incl. final fdatasync\n", "direct pwrite 1M sequential QD1",
              kSeqBytes / writeUs * 1e6 / k1M, kSeqBytes / totalUs * 1e6 / k1M);
  close(fd);
  unlink((dir + "/seq-direct").c_str());
}

void Seq1mUring(const std::string& dir, unsigned depth) {
  std::string path = dir + "/seq-uring";
  int fd = OpenFresh(path, 0);
  io_uring ring;
  if (int rc = io_uring_queue_init(depth * 2, &ring, 0); rc < 0) Die("io_uring_queue_init", -rc);
  std::vector<std::vector<char>> bufs(depth, std::vector<char>(k1M, 0x5b));
  auto t0 = Clock::now();
  size_t next = 0, done = 0;
  unsigned inflight = 0;
  while (done < kSeqBytes) {
    while (inflight < depth && next < kSeqBytes) {
      io_uring_sqe* w = io_uring_get_sqe(&ring);
      io_uring_prep_write(w, fd, bufs[(next / k1M) % depth].data(), k1M, next);
      next += k1M;
      inflight++;
    }
    if (int rc = io_uring_submit_and_wait(&ring, 1); rc < 0) Die("io_uring_submit_and_wait", -rc);
    io_uring_cqe* cqe;
    while (io_uring_peek_cqe(&ring, &cqe) == 0) {
      if (cqe->res != (int)k1M) Die("cqe short/failed", cqe->res < 0 ? -cqe->res : EIO);
      io_uring_cqe_seen(&ring, cqe);
      inflight--;
      done += k1M;
    }
  }
  double writeUs = Since(t0);
  if (fdatasync(fd) != 0) Die("fdatasync", errno);
  double totalUs = Since(t0);
  char name[64];
  std::snprintf(name, sizeof name, "io_uring write 1M sequential QD%u", depth);
  std::printf("%-34s %6.0f MiB/s buffered, %6.0f MiB/s incl. final fdatasync\n", name,
              kSeqBytes / writeUs * 1e6 / k1M, kSeqBytes / totalUs * 1e6 / k1M);
  io_uring_queue_exit(&ring);
  close(fd);
  unlink(path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <dir>\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  // Warm-up, not reported fairly: the first buffered pass after boot also pays for the
  // guest's first touch of page-cache memory (this is a VM), which later passes reuse.
  std::printf("(warm-up) ");
  Seq1mDirect(dir);
  for (int round = 0; round < 3; round++) {  // rounds interleave the cases to expose drift
    Sync4k(dir);
    Uring4k(dir);
    Seq1mDirect(dir);
    Seq1mUring(dir, 1);
    Seq1mUring(dir, 4);
  }
  return 0;
}
