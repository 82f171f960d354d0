// Tests for pervade::run_shell (src/executors/shell/run_shell.cpp).
//
// Synchronisation rule: no test sleeps to "let something happen". Where a test has to wait for
// the shell to reach a state (a pid file written, a killed process gone) it polls that real
// condition with a generous deadline. Timing assertions are only generous upper bounds.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pervade/errors.hpp"
#include "pervade/shell.hpp"

namespace pervade::detail {
// Test hook defined in run_shell.cpp: forces the waitid-polling fallback (no pidfd).
void shell_disable_pidfd_for_testing(bool disable);
}  // namespace pervade::detail

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using pervade::run_shell;
using pervade::ShellCommand;
using pervade::ShellInterrupt;
using pervade::ShellResult;

constexpr auto kDeadline = 10s;  // generous bound for anything that should be quick

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

// Parses a pid from a file written by `echo $pid > file` (one write() of "<digits>\n").
std::optional<pid_t> read_pid_file(const fs::path& p) {
  const std::string s = read_file(p);
  if (s.empty() || s.back() != '\n') return std::nullopt;
  try {
    return static_cast<pid_t>(std::stol(s));
  } catch (...) {
    return std::nullopt;
  }
}

// Polls (bounded) until the pid file is complete.
std::optional<pid_t> wait_for_pid_file(const fs::path& p, std::chrono::nanoseconds timeout = kDeadline) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto pid = read_pid_file(p)) return pid;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(2ms);
  }
}

// A process is gone if it no longer exists or is a zombie (dead, waiting for its new parent,
// init, to reap it - it no longer runs anything).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= stat.size()) return true;  // vanished meanwhile
  const char state = stat[close_paren + 2];
  return state == 'Z' || state == 'X';
}

// Polls (bounded) until the process is gone: SIGKILL is delivered asynchronously.
bool wait_until_gone(pid_t pid, std::chrono::nanoseconds timeout = kDeadline) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (process_gone(pid)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
}

std::size_t count_open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

ShellCommand make_cmd(std::string command) {
  ShellCommand c;
  c.command = std::move(command);
  return c;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

class ShellTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "pervade_shell_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr) << std::strerror(errno);
    dir_ = templ;
  }
  void TearDown() override {
    pervade::detail::shell_disable_pidfd_for_testing(false);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// ---------------------------------------------------------------------------------------------
// Exit codes

TEST_F(ShellTest, ExitCodeZero) {
  const ShellResult r = run_shell(make_cmd("true"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.interrupted);
}

TEST_F(ShellTest, ExitCodeNonZero) {
  EXPECT_EQ(run_shell(make_cmd("exit 3")).exit_code, 3);
  EXPECT_EQ(run_shell(make_cmd("false")).exit_code, 1);
  EXPECT_EQ(run_shell(make_cmd("no_such_command_pervade_xyz 2>/dev/null")).exit_code, 127);
}

TEST_F(ShellTest, ExitCodeKilledBySignal) {
  const ShellResult r = run_shell(make_cmd("kill -TERM $$"));
  EXPECT_EQ(r.exit_code, 128 + SIGTERM);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.interrupted);
}

// ---------------------------------------------------------------------------------------------
// Streams

TEST_F(ShellTest, StdoutTruncate) {
  const auto out = path("out.txt");
  write_file(out, "old content that must disappear\n");
  ShellCommand c = make_cmd("echo new");
  c.stdout_spec = {out, /*append=*/false};
  EXPECT_EQ(run_shell(c).exit_code, 0);
  EXPECT_EQ(read_file(out), "new\n");
}

TEST_F(ShellTest, StdoutAppend) {
  const auto out = path("out.txt");
  write_file(out, "old\n");
  ShellCommand c = make_cmd("echo new");
  c.stdout_spec = {out, /*append=*/true};
  EXPECT_EQ(run_shell(c).exit_code, 0);
  EXPECT_EQ(run_shell(c).exit_code, 0);
  EXPECT_EQ(read_file(out), "old\nnew\nnew\n");
}

TEST_F(ShellTest, StreamFileCreatedWithMode0644) {
  const auto out = path("fresh.txt");
  const mode_t old_umask = ::umask(0);
  ShellCommand c = make_cmd("echo hi");
  c.stdout_spec = {out, true};
  const ShellResult r = run_shell(c);
  ::umask(old_umask);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(fs::status(out).permissions(), fs::perms(0644));
}

TEST_F(ShellTest, StderrToFile) {
  const auto out = path("out.txt");
  const auto err = path("err.txt");
  ShellCommand c = make_cmd("echo to-out; echo to-err >&2");
  c.stdout_spec = {out, false};
  c.stderr_spec = {err, false};
  EXPECT_EQ(run_shell(c).exit_code, 0);
  EXPECT_EQ(read_file(out), "to-out\n");
  EXPECT_EQ(read_file(err), "to-err\n");
}

TEST_F(ShellTest, StderrOnlyLeavesStdoutInherited) {
  const auto err = path("err.txt");
  ShellCommand c = make_cmd("echo oops >&2; exit 4");
  c.stderr_spec = {err, true};
  EXPECT_EQ(run_shell(c).exit_code, 4);
  EXPECT_EQ(read_file(err), "oops\n");
}

TEST_F(ShellTest, SameFileForStdoutAndStderr) {
  const auto both = path("both.txt");
  write_file(both, "previous content, longer than what the command writes\n");
  ShellCommand c = make_cmd("echo one; echo two >&2; echo three; echo four >&2");
  c.stdout_spec = {both, false};
  c.stderr_spec = {both, false};
  EXPECT_EQ(run_shell(c).exit_code, 0);
  // One shared open file description: nothing overwritten, order preserved.
  EXPECT_EQ(read_file(both), "one\ntwo\nthree\nfour\n");
}

TEST_F(ShellTest, SameFileSpelledDifferently) {
  const auto both = path("both.txt");
  ShellCommand c = make_cmd("echo one; echo two >&2");
  c.stdout_spec = {both, false};
  c.stderr_spec = {(dir_ / "." / "both.txt").string(), false};
  EXPECT_EQ(run_shell(c).exit_code, 0);
  EXPECT_EQ(read_file(both), "one\ntwo\n");
}

TEST_F(ShellTest, SameFileAppendKeepsOldContent) {
  const auto both = path("both.txt");
  write_file(both, "old\n");
  ShellCommand c = make_cmd("echo one; echo two >&2");
  c.stdout_spec = {both, true};
  c.stderr_spec = {both, true};
  EXPECT_EQ(run_shell(c).exit_code, 0);
  EXPECT_EQ(read_file(both), "old\none\ntwo\n");
}

TEST_F(ShellTest, CreatesMissingParentDirectories) {
  const auto out = path("a/b/c/out.txt");
  const auto err = path("x/y/err.txt");
  ShellCommand c = make_cmd("echo o; echo e >&2");
  c.stdout_spec = {out, true};
  c.stderr_spec = {err, true};
  EXPECT_EQ(run_shell(c).exit_code, 0);
  EXPECT_EQ(read_file(out), "o\n");
  EXPECT_EQ(read_file(err), "e\n");
}

TEST_F(ShellTest, RelativeStreamPathIsRelativeToCallerCwd) {
  // Relative stream paths are opened by the caller, i.e. relative to its cwd, not working_dir.
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir_);
  fs::create_directory(dir_ / "wd");
  ShellCommand c = make_cmd("echo rel");
  c.stdout_spec = {"rel/out.txt", false};
  c.working_dir = (dir_ / "wd").string();
  const ShellResult r = run_shell(c);
  fs::current_path(old_cwd);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(read_file(dir_ / "rel/out.txt"), "rel\n");
}

TEST_F(ShellTest, BadStdoutPathThrowsNamingPath) {
  const std::string bad = "/proc/pervade_no_such_dir/sub/out.txt";
  ShellCommand c = make_cmd("echo never");
  c.stdout_spec = {bad, false};
  try {
    run_shell(c);
    FAIL() << "expected BadStdStreamFile";
  } catch (const pervade::BadStdStreamFile& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(bad), std::string::npos) << msg;
    EXPECT_NE(msg.find("stdout"), std::string::npos) << msg;
    // The OS error text is part of the message.
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  }
}

TEST_F(ShellTest, BadStderrPathThrowsNamingPath) {
  const std::string bad = "/proc/pervade_no_such_dir/err.txt";
  ShellCommand c = make_cmd("echo never > " + path("ran.txt"));
  c.stdout_spec = {path("out.txt"), false};
  c.stderr_spec = {bad, false};
  try {
    run_shell(c);
    FAIL() << "expected BadStdStreamFile";
  } catch (const pervade::BadStdStreamFile& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path("ran.txt"))) << "the command must not run when a stream cannot be opened";
}

TEST_F(ShellTest, StreamPathIsADirectoryThrows) {
  ShellCommand c = make_cmd("true");
  c.stdout_spec = {dir_.string(), true};
  try {
    run_shell(c);
    FAIL() << "expected BadStdStreamFile";
  } catch (const pervade::BadStdStreamFile& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir_.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("Is a directory"), std::string::npos) << msg;
  }
}

TEST_F(ShellTest, StreamFdsNotInheritedBeyondStdio) {
  const auto out = path("out.txt");
  const auto err = path("err.txt");
  ShellCommand c = make_cmd("readlink /proc/$$/fd/* 2>/dev/null; exit 0");
  c.stdout_spec = {out, false};
  c.stderr_spec = {err, false};
  EXPECT_EQ(run_shell(c).exit_code, 0) << read_file(err);
  std::istringstream lines(read_file(out));
  int out_refs = 0, err_refs = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line == fs::canonical(out).string()) ++out_refs;
    if (line == fs::canonical(err).string()) ++err_refs;
  }
  EXPECT_EQ(out_refs, 1) << read_file(out);  // fd 1 only
  EXPECT_EQ(err_refs, 1) << read_file(out);  // fd 2 only
}

// ---------------------------------------------------------------------------------------------
// Working directory

TEST_F(ShellTest, WorkingDirectory) {
  fs::create_directory(dir_ / "wd");
  const auto out = path("pwd.txt");
  ShellCommand c = make_cmd("pwd -P");
  c.stdout_spec = {out, false};
  c.working_dir = (dir_ / "wd").string();
  EXPECT_EQ(run_shell(c).exit_code, 0);
  EXPECT_EQ(read_file(out), fs::canonical(dir_ / "wd").string() + "\n");
}

TEST_F(ShellTest, BadWorkingDirectoryThrowsNamingIt) {
  const std::string bad = path("no/such/dir");
  ShellCommand c = make_cmd("true");
  c.working_dir = bad;
  try {
    run_shell(c);
    FAIL() << "expected pervade::Error";
  } catch (const pervade::BadStdStreamFile&) {
    FAIL() << "wrong exception type";
  } catch (const pervade::Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Walltime

void expect_walltime_kills_group(const std::string& leader_file, const std::string& child_file) {
  ShellCommand c;
  c.command = "echo $$ > " + leader_file + "; sleep 30 & echo $! > " + child_file + "; wait";
  c.walltime = 0.5s;
  const auto t0 = Clock::now();
  const ShellResult r = run_shell(c);
  const double elapsed = seconds_since(t0);
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  EXPECT_LT(elapsed, 10.0);
  EXPECT_GE(elapsed, 0.4);  // it did not return before the walltime

  // 0.5 s is ample for bash to write the pid files before it is killed.
  const auto leader = read_pid_file(leader_file);
  const auto child = read_pid_file(child_file);
  ASSERT_TRUE(leader.has_value());
  ASSERT_TRUE(child.has_value());
  // The leader has been reaped by run_shell.
  EXPECT_EQ(::kill(*leader, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  // The background sleep was in the group and was killed (it may briefly be a zombie
  // awaiting its new parent).
  EXPECT_TRUE(wait_until_gone(*child)) << "pid " << *child << " survived";
}

TEST_F(ShellTest, WalltimeKillsProcessGroup) {
  expect_walltime_kills_group(path("leader.pid"), path("child.pid"));
}

TEST_F(ShellTest, WalltimeNotReachedIsNotTimeout) {
  ShellCommand c = make_cmd("exit 7");
  c.walltime = 30s;
  const ShellResult r = run_shell(c);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_FALSE(r.timed_out);
}

TEST_F(ShellTest, ZeroOrNegativeWalltimeMeansNoLimit) {
  ShellCommand c = make_cmd("exit 0");
  c.walltime = std::chrono::duration<double>(0);
  EXPECT_FALSE(run_shell(c).timed_out);
  c.walltime = std::chrono::duration<double>(-1);
  EXPECT_FALSE(run_shell(c).timed_out);
}

// ---------------------------------------------------------------------------------------------
// Interrupts

// Runs `sleep 30` in the background of bash; another thread waits (bounded) for the child pid
// file and then calls request().
void expect_interrupt_from_thread(const std::string& child_file) {
  ShellInterrupt irq;
  std::atomic<bool> saw_pid{false};
  std::thread killer([&] {
    saw_pid = wait_for_pid_file(child_file).has_value();
    irq.request();  // even on deadline, so the test cannot hang for 30 s
  });
  ShellCommand c;
  c.command = "sleep 30 & echo $! > " + child_file + "; wait";
  const auto t0 = Clock::now();
  const ShellResult r = run_shell(c, &irq);
  const double elapsed = seconds_since(t0);
  killer.join();

  ASSERT_TRUE(saw_pid.load()) << "the command never wrote its pid file";
  EXPECT_TRUE(r.interrupted);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  EXPECT_LT(elapsed, 10.0);
  const auto child = read_pid_file(child_file);
  ASSERT_TRUE(child.has_value());
  EXPECT_TRUE(wait_until_gone(*child)) << "pid " << *child << " survived";
}

TEST_F(ShellTest, InterruptFromAnotherThread) { expect_interrupt_from_thread(path("child.pid")); }

TEST_F(ShellTest, InterruptBeforeStart) {
  ShellInterrupt irq;
  irq.request();
  EXPECT_TRUE(irq.requested());
  ShellCommand c;
  c.command = "sleep 30";
  const auto t0 = Clock::now();
  const ShellResult r = run_shell(c, &irq);
  EXPECT_TRUE(r.interrupted);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  EXPECT_LT(seconds_since(t0), 10.0);
}

// request() racing with the start of the command (before, during or after the spawn) is
// never lost. Whatever the interleaving, the run ends promptly and reports the interrupt; the
// walltime is only a safety net so that a lost request fails the test instead of hanging it.
TEST_F(ShellTest, RequestRacingWithStartIsNeverLost) {
  for (int i = 0; i < 40; ++i) {
    ShellInterrupt irq;
    std::atomic<bool> go{false};
    std::thread killer([&] {
      while (!go.load()) std::this_thread::yield();
      irq.request();
    });
    ShellCommand c = make_cmd("sleep 30");
    c.walltime = 15s;
    go = true;
    const ShellResult r = run_shell(c, &irq);
    killer.join();
    ASSERT_TRUE(r.interrupted) << "iteration " << i;
    ASSERT_FALSE(r.timed_out) << "iteration " << i << ": request() was lost";
  }
}

TEST_F(ShellTest, InterruptObjectReusedSequentially) {
  ShellInterrupt irq;
  ShellCommand c = make_cmd("exit 2");
  ShellResult r = run_shell(c, &irq);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(r.interrupted);
  r = run_shell(c, &irq);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(r.interrupted);
  // A request with nothing running only marks the object; it is sticky, so the next run
  // is interrupted without running.
  irq.request();
  c.command = "echo ran > " + path("ran.txt");
  r = run_shell(c, &irq);
  EXPECT_TRUE(r.interrupted);
  EXPECT_FALSE(fs::exists(path("ran.txt")));
}

TEST_F(ShellTest, ConcurrentRequestsAreSafe) {
  ShellInterrupt irq;
  const auto child_file = path("child.pid");
  std::vector<std::thread> killers;
  for (int i = 0; i < 4; ++i) {
    killers.emplace_back([&] {
      wait_for_pid_file(child_file);
      irq.request();
    });
  }
  ShellCommand c;
  c.command = "sleep 30 & echo $! > " + child_file + "; wait";
  const ShellResult r = run_shell(c, &irq);
  for (auto& k : killers) k.join();
  EXPECT_TRUE(r.interrupted);
  const auto child = read_pid_file(child_file);
  ASSERT_TRUE(child.has_value());
  EXPECT_TRUE(wait_until_gone(*child));
}

// ---------------------------------------------------------------------------------------------
// Process-tree hygiene

TEST_F(ShellTest, BackgroundGrandchildKilledAfterExit) {
  const auto child_file = path("child.pid");
  ShellCommand c;
  c.command = "sleep 100 >/dev/null 2>&1 & echo $! > " + child_file + "; exit 0";
  const auto t0 = Clock::now();
  const ShellResult r = run_shell(c);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.interrupted);
  EXPECT_LT(seconds_since(t0), 10.0);
  const auto child = read_pid_file(child_file);
  ASSERT_TRUE(child.has_value());
  EXPECT_TRUE(wait_until_gone(*child)) << "background pid " << *child << " leaked";
}

TEST_F(ShellTest, RunsInNewSession) {
  const auto out = path("ids.txt");
  ShellCommand c = make_cmd("ps -o pid=,pgid=,sid= -p $$ 2>/dev/null || "
                            "awk '{print $1, $5, $6}' /proc/$$/stat");
  c.stdout_spec = {out, false};
  EXPECT_EQ(run_shell(c).exit_code, 0);
  std::istringstream in(read_file(out));
  long pid = 0, pgid = 0, sid = 0;
  ASSERT_TRUE(in >> pid >> pgid >> sid) << read_file(out);
  EXPECT_EQ(pgid, pid);
  EXPECT_EQ(sid, pid);
  EXPECT_NE(pgid, static_cast<long>(::getpgrp()));
}

TEST_F(ShellTest, SignalMaskAndSigpipeResetInChild) {
  // Caller ignores SIGPIPE (as Python does) and blocks SIGTERM in this thread.
  struct sigaction ign {}, old_pipe {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &ign, &old_pipe), 0);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);

  const int pipe_code = run_shell(make_cmd("kill -PIPE $$; exit 0")).exit_code;
  const int term_code = run_shell(make_cmd("kill -TERM $$; exit 0")).exit_code;

  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  EXPECT_EQ(pipe_code, 128 + SIGPIPE);
  EXPECT_EQ(term_code, 128 + SIGTERM);
}

TEST_F(ShellTest, ConcurrentRuns) {
  std::vector<std::thread> threads;
  std::vector<int> codes(6, -1);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      ShellCommand c = make_cmd("echo " + std::to_string(i) + "; exit " + std::to_string(i));
      c.stdout_spec = {path("out" + std::to_string(i) + ".txt"), false};
      codes[i] = run_shell(c).exit_code;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(codes[i], i);
    EXPECT_EQ(read_file(path("out" + std::to_string(i) + ".txt")), std::to_string(i) + "\n");
  }
}

TEST_F(ShellTest, NoFdLeak) {
  const std::size_t before = count_open_fds();

  run_shell(make_cmd("true"));
  {
    ShellCommand c = make_cmd("echo o; echo e >&2");
    c.stdout_spec = {path("o.txt"), false};
    c.stderr_spec = {path("e.txt"), true};
    run_shell(c);
    c.stderr_spec = {path("o.txt"), true};  // shared description
    run_shell(c);
  }
  {
    ShellCommand c = make_cmd("sleep 30");
    c.walltime = 0.2s;
    c.stdout_spec = {path("t.txt"), false};
    EXPECT_TRUE(run_shell(c).timed_out);
  }
  {
    ShellInterrupt irq;
    irq.request();
    run_shell(make_cmd("true"), &irq);
  }
  {
    ShellCommand c = make_cmd("true");
    c.stdout_spec = {path("fine.txt"), false};  // opened, then stderr fails: must be closed
    c.stderr_spec = {"/proc/pervade_no_such_dir/e.txt", false};
    EXPECT_THROW(run_shell(c), pervade::BadStdStreamFile);
  }
  {
    ShellCommand c = make_cmd("true");
    c.stdout_spec = {path("fine.txt"), false};
    c.working_dir = path("missing");
    EXPECT_THROW(run_shell(c), pervade::Error);
  }
  expect_interrupt_from_thread(path("child.pid"));

  EXPECT_EQ(count_open_fds(), before);
}

// No zombie children are left behind: every exited child of this process has been reaped.
bool has_zombie_children() {
  siginfo_t si{};
  si.si_pid = 0;
  if (::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return false;  // ECHILD: no children
  return si.si_pid != 0;
}

TEST_F(ShellTest, NoZombiesLeft) {
  ASSERT_FALSE(has_zombie_children());
  run_shell(make_cmd("exit 1"));
  run_shell(make_cmd("sleep 100 >/dev/null 2>&1 & exit 0"));
  ShellCommand c = make_cmd("sleep 30");
  c.walltime = 0.2s;
  EXPECT_TRUE(run_shell(c).timed_out);
  expect_interrupt_from_thread(path("child.pid"));
  EXPECT_FALSE(has_zombie_children());
}

// ---------------------------------------------------------------------------------------------
// Fallback waiting path (no pidfd): same behaviour.

TEST_F(ShellTest, FallbackWithoutPidfd) {
  pervade::detail::shell_disable_pidfd_for_testing(true);
  const std::size_t before = count_open_fds();

  EXPECT_EQ(run_shell(make_cmd("exit 5")).exit_code, 5);
  expect_walltime_kills_group(path("leader.pid"), path("child.pid"));
  expect_interrupt_from_thread(path("child2.pid"));

  EXPECT_EQ(count_open_fds(), before);
}

}  // namespace
