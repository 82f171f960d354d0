#pragma once
// Small process helpers shared by the shell runner, the pool and the local provider. Any thread.
#include <sys/wait.h>

#include <cerrno>

namespace pervade::detail {

// True once `pid` has terminated (it is then a zombie: waitid(WNOWAIT) does not reap it).
// Also true if the child can no longer be waited for at all (ECHILD: reaped by someone else),
// since there is then nothing left to wait for; *lost (if given) tells that case apart.
inline bool has_exited(pid_t pid, bool* lost = nullptr) {
  siginfo_t si{};
  int r;
  do {
    si.si_pid = 0;
    r = ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT);
  } while (r < 0 && errno == EINTR);
  if (lost) *lost = r < 0;
  return r < 0 || si.si_pid != 0;
}

}  // namespace pervade::detail
