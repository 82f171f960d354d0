#pragma once
// Test helpers for providers and launchers: a temporary directory, executable shell scripts
// that stand in for scheduler commands (put first on PATH for the test's duration), and running
// generated shell text with bash. Test thread only.
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace pervade::test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "pervade_providers_XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_file(const fs::path& path, const std::string& content) {
  std::ofstream f(path, std::ios::trunc);
  f << content;
}

inline std::string read_file(const fs::path& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A bash script at dir/name, executable.
inline void write_command(const fs::path& dir, const std::string& name, const std::string& body) {
  write_file(dir / name, "#!/bin/bash\n" + body);
  ::chmod((dir / name).c_str(), 0755);
}

// Puts `dir` first on PATH (or makes PATH exactly `dir` with replace), restores it after.
class PathPrefix {
 public:
  explicit PathPrefix(const fs::path& dir, bool replace = false) {
    const char* old = ::getenv("PATH");
    old_ = old ? old : "";
    const std::string path = replace ? dir.string() : dir.string() + ":" + old_;
    ::setenv("PATH", path.c_str(), 1);
  }
  ~PathPrefix() { ::setenv("PATH", old_.c_str(), 1); }
  PathPrefix(const PathPrefix&) = delete;
  PathPrefix& operator=(const PathPrefix&) = delete;

 private:
  std::string old_;
};

struct BashRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

// Runs `script` with /bin/bash in `dir` (the script's own file there), PATH prefixed by `path_prefix`
// when given, and `env` lines exported first.
inline BashRun run_bash(const fs::path& dir, const std::string& script, const std::string& env = "",
                        const fs::path& path_prefix = {}) {
  write_file(dir / "run.sh", env + script);
  std::string cmd = "cd '" + dir.string() + "' && ";
  if (!path_prefix.empty()) cmd += "PATH='" + path_prefix.string() + "':\"$PATH\" ";
  cmd += "/bin/bash run.sh > run.out 2>&1";
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir / "run.out")};
}

// Lines of `text`, in order.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace pervade::test
