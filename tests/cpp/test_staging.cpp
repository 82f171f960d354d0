// Tests for pervade::staging::fetch (src/staging/transfer.cpp) that need no server: failures leave
// nothing behind and say why. Transfers from real HTTP, HTTPS and FTP servers are tested from Python
// (tests/python/test_staging.py), which starts those servers.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "pervade/staging.hpp"

namespace {

namespace fs = std::filesystem;
using pervade::staging::FetchOptions;
using pervade::staging::fetch;

/// A loopback port no one listens on (bound, then closed).
int closed_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::close(s);
  return ntohs(a.sin_port);
}

class StagingFetch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pervade-staging-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.is_regular_file()) names.push_back(e.path().filename().string());
    }
    return names;
  }
  fs::path dir_;
};

TEST_F(StagingFetch, RefusedConnectionLeavesNothing) {
  auto url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/x.txt";
  auto r = fetch(url, (dir_ / "out" / "x.txt").string(), {});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("onnect"), std::string::npos) << r.error;
  EXPECT_TRUE(files().empty());
}

TEST_F(StagingFetch, OtherSchemesAreRefused) {
  auto r = fetch("file:///etc/hostname", (dir_ / "h").string(), {});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("rotocol"), std::string::npos) << r.error;
  EXPECT_TRUE(files().empty());
}

TEST_F(StagingFetch, ACacheOthersMayWriteIsNotUsed) {
  fs::path cache = dir_ / "cache";
  fs::create_directories(cache);
  ::chmod(cache.c_str(), 0777);
  FetchOptions o;
  o.cache_dir = cache.string();
  std::vector<std::string> lines;
  o.log = [&](const std::string& line) { lines.push_back(line); };
  auto r = fetch("http://127.0.0.1:" + std::to_string(closed_port()) + "/x", (dir_ / "x").string(), o);
  EXPECT_FALSE(r.ok);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines[0].find("not a directory of this user's only"), std::string::npos) << lines[0];
  EXPECT_TRUE(fs::is_empty(cache));
}

}  // namespace
