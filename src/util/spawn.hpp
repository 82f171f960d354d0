#pragma once
// posix_spawn helpers shared by the shell runner, the pool and the local provider: RAII for
// the attribute objects, the child's signal state, and errno texts. Any thread.
#include <signal.h>
#include <spawn.h>

#include <string>
#include <system_error>

#include "pervade/errors.hpp"

namespace pervade::detail {

inline std::string os_error(int err) { return std::error_code(err, std::generic_category()).message(); }

// Throws pervade::Error "<what> failed: <reason>" for a non-zero posix_spawn* result.
inline void check_spawn(int rc, const char* what) {
  if (rc != 0) throw Error(std::string(what) + " failed: " + os_error(rc));
}

struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() { check_spawn(posix_spawnattr_init(&attr), "posix_spawnattr_init"); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
};

struct SpawnFileActions {
  posix_spawn_file_actions_t fa;
  SpawnFileActions() { check_spawn(posix_spawn_file_actions_init(&fa), "posix_spawn_file_actions_init"); }
  ~SpawnFileActions() { posix_spawn_file_actions_destroy(&fa); }
  SpawnFileActions(const SpawnFileActions&) = delete;
  SpawnFileActions& operator=(const SpawnFileActions&) = delete;
};

// A child starts with an empty signal mask and default dispositions for the signals its
// parent may block or ignore; `flags` adds POSIX_SPAWN_SETSID or POSIX_SPAWN_SETPGROUP.
// Returns 0 or the error number.
inline int reset_child_signals(SpawnAttr& a, short flags) {
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t to_default;
  sigemptyset(&to_default);
  for (int sig : {SIGPIPE, SIGXFSZ, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2, SIGTSTP,
                  SIGTTIN, SIGTTOU})
    sigaddset(&to_default, sig);
  if (int rc = posix_spawnattr_setsigmask(&a.attr, &empty)) return rc;
  if (int rc = posix_spawnattr_setsigdefault(&a.attr, &to_default)) return rc;
  return posix_spawnattr_setflags(&a.attr, static_cast<short>(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | flags));
}

}  // namespace pervade::detail
