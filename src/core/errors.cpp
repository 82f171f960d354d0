#include "pervade/errors.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace pervade {

namespace {
constexpr std::size_t kShownHops = 8;
// Errors nest (a dependent's error holds its dependency's error). Past this depth a
// dependency's error is replaced by its root cause, so that a failure at the head of a long
// chain does not build an unbounded nest, which would also be destroyed recursively.
constexpr std::size_t kMaxNesting = 32;

const PropagatedError* as_propagated(const std::exception_ptr& e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const PropagatedError& p) {
    return &p;
  } catch (...) {
  }
  return nullptr;
}
}  // namespace

struct PropagatedChain {
  static void build(PropagatedError& self, const char* description) {
    const auto& failed = self.failed_;
    if (failed.empty()) {
      self.msg_ = fmt::format("{} for task {}", description, self.task_.value);
      return;
    }
    self.hops_.push_back(fmt::format("task {}{}", failed[0].second.value, failed.size() > 1 ? " (+ others)" : ""));
    self.depth_ = 1;
    self.root_ = self.hops_[0];
    const PropagatedError* below = as_propagated(failed[0].first);
    self.root_cause_ = below ? below->root_cause_ : failed[0].first;
    if (below && below->depth_ > 0) {
      for (std::size_t i = 0; i < below->hops_.size() && self.hops_.size() < kShownHops; ++i)
        self.hops_.push_back(below->hops_[i]);
      self.root_ = below->root_;
      self.depth_ = below->depth_ + 1;
    }
    std::string text = fmt::format("{}", fmt::join(self.hops_, " <- "));
    if (self.depth_ > self.hops_.size()) text += " <- ... <- " + self.root_;
    self.msg_ = fmt::format("{} for task {}. The representative cause is via {}", description, self.task_.value, text);
    for (auto& entry : self.failed_) {
      const PropagatedError* p = as_propagated(entry.first);
      if (p && p->depth_ >= kMaxNesting) entry.first = p->root_cause_;
    }
  }
};

PropagatedError::PropagatedError(const char* description, Failures failed, TaskId task)
    : Error(""), failed_(std::move(failed)), task_(task) {
  PropagatedChain::build(*this, description);
}

const char* PropagatedError::what() const noexcept { return msg_.c_str(); }

BashExitFailure::BashExitFailure(std::string app_name, int exitcode)
    : Error(fmt::format("bash_app {} failed with unix exit code {}", app_name, exitcode)),
      app_name_(std::move(app_name)),
      exitcode_(exitcode) {}

MissingOutputs::MissingOutputs(std::string reason, std::vector<std::string> outputs)
    : Error(fmt::format("Missing Outputs: {}, Reason: {}", fmt::join(outputs, ", "), reason)),
      outputs_(std::move(outputs)) {}

std::string describe(const std::exception_ptr& e) {
  if (!e) return "";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace pervade
