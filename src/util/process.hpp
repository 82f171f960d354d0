#pragma once
// Small process helpers shared by the shell runner and the pool. Any thread.
#include <sys/wait.h>

#include <cerrno>

namespace pervade::detail {

// True once `pid` has terminated (it is then a zombie: waitid(WNOWAIT) does not reap it).
// Also true if the child can no longer be waited for at all (ECHILD: reaped by someone else),
// since there is then nothing left to wait for.
inline bool has_exited(pid_t pid) {
  siginfo_t si{};
  int r;
  do {
    si.si_pid = 0;
    r = ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT);
  } while (r < 0 && errno == EINTR);
  return r < 0 || si.si_pid != 0;
}

}  // namespace pervade::detail
