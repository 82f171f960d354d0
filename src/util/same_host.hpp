#pragma once
// Which "host" this process is on, for the interchange's same-host (ipc://) socket: the
// kernel's boot id plus the network namespace. Two processes with the same id share a kernel
// (so a Unix socket file one binds is one the other can connect to, when it sees the file),
// and a network namespace (a container or a simulated host in the tests keeps using the
// network, as a pool on another machine would). Internal: any thread.
#include <sys/stat.h>

#include <fstream>
#include <string>

namespace pervade::detail {

inline std::string same_host_id() {
  std::string boot_id;
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  if (!std::getline(in, boot_id) || boot_id.empty()) return {};
  struct stat st {};
  if (::stat("/proc/self/ns/net", &st) != 0) return {};
  return boot_id + "/net:" + std::to_string(static_cast<unsigned long long>(st.st_ino));
}

}  // namespace pervade::detail
