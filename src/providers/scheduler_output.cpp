// The schedulers' output formats and state tables. The tables follow each scheduler's
// documented state codes; where Parsl's tables say FAILED or CANCELLED for a suspended or held
// job we say HELD, since such a job may still run.
#include "providers/scheduler_output.hpp"

#include <algorithm>
#include <cctype>
#include <regex>
#include <sstream>
#include <string_view>

#include <fmt/format.h>

#include "pervade/errors.hpp"

namespace pervade::detail {

namespace {

struct StateCode {
  std::string_view code;
  JobState state;
};

// https://slurm.schedmd.com/sacct.html#SECTION_JOB-STATE-CODES
constexpr StateCode kSacctStates[] = {
    {"PENDING", JobState::pending},       {"RUNNING", JobState::running},     {"CANCELLED", JobState::cancelled},
    {"COMPLETED", JobState::completed},   {"FAILED", JobState::failed},       {"NODE_FAIL", JobState::failed},
    {"BOOT_FAIL", JobState::failed},      {"DEADLINE", JobState::timeout},    {"TIMEOUT", JobState::timeout},
    {"REVOKED", JobState::failed},        {"OUT_OF_MEMORY", JobState::failed}, {"SUSPENDED", JobState::held},
    {"PREEMPTED", JobState::timeout},     {"REQUEUED", JobState::pending},    {"RESIZING", JobState::running},
    {"REQUEUE_HOLD", JobState::held},     {"REQUEUE_FED", JobState::pending},
};

// https://slurm.schedmd.com/squeue.html#SECTION_JOB-STATE-CODES
constexpr StateCode kSqueueStates[] = {
    {"PD", JobState::pending},  {"R", JobState::running},   {"CA", JobState::cancelled}, {"CF", JobState::pending},
    {"CG", JobState::running},  {"CD", JobState::completed}, {"F", JobState::failed},    {"TO", JobState::timeout},
    {"NF", JobState::failed},   {"RV", JobState::failed},   {"SE", JobState::failed},    {"OOM", JobState::failed},
    {"BF", JobState::failed},   {"DL", JobState::timeout},  {"PR", JobState::timeout},   {"RQ", JobState::pending},
    {"RF", JobState::pending},  {"RH", JobState::held},     {"RD", JobState::held},      {"RS", JobState::running},
    {"S", JobState::held},      {"ST", JobState::held},     {"SI", JobState::running},   {"SO", JobState::running},
};

// qstat(1B) job states (Torque and PBS Pro).
constexpr StateCode kPbsStates[] = {
    {"B", JobState::running},   {"R", JobState::running}, {"C", JobState::completed}, {"E", JobState::completed},
    {"F", JobState::completed}, {"H", JobState::held},    {"Q", JobState::pending},   {"W", JobState::pending},
    {"S", JobState::held},      {"T", JobState::pending}, {"U", JobState::held},      {"X", JobState::completed},
    {"M", JobState::completed},  // moved to another server: gone from ours
};

// Grid Engine qstat(1) states, lower-cased.
constexpr StateCode kSgeStates[] = {
    {"qw", JobState::pending},   {"hqw", JobState::pending},  {"hrwq", JobState::pending}, {"r", JobState::running},
    {"t", JobState::running},    {"rr", JobState::running},   {"rt", JobState::running},   {"s", JobState::held},
    {"ts", JobState::held},      {"ss", JobState::held},      {"st", JobState::held},      {"eqw", JobState::failed},
    {"ehqw", JobState::failed},  {"ehrqw", JobState::failed}, {"d", JobState::completed},  {"dr", JobState::completed},
    {"dt", JobState::completed}, {"drt", JobState::completed}, {"ds", JobState::completed}, {"drs", JobState::completed},
};

// bjobs(1) STAT values.
constexpr StateCode kLsfStates[] = {
    {"PEND", JobState::pending}, {"WAIT", JobState::pending},  {"PROV", JobState::pending},
    {"RUN", JobState::running},  {"DONE", JobState::completed}, {"EXIT", JobState::failed},
    {"PSUSP", JobState::held},   {"USUSP", JobState::held},    {"SSUSP", JobState::held},
    {"ZOMBI", JobState::failed}, {"UNKWN", JobState::unknown},
};

// HTCondor's JobStatus attribute.
constexpr StateCode kCondorStates[] = {
    {"1", JobState::pending},   {"2", JobState::running}, {"3", JobState::cancelled}, {"4", JobState::completed},
    {"5", JobState::held},      {"6", JobState::running}, {"7", JobState::held},
};

template <std::size_t N>
JobStatus translate(const StateCode (&table)[N], std::string_view scheduler, const std::string& code) {
  for (const auto& e : table)
    if (e.code == code) return JobStatus{e.state, fmt::format("{} state {}", scheduler, code), std::nullopt, ""};
  return JobStatus{JobState::unknown, fmt::format("unknown {} state '{}'", scheduler, code), std::nullopt, ""};
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (l.find_first_not_of(" \t") != std::string::npos) out.push_back(l);
  }
  return out;
}

[[noreturn]] void unexpected(const std::string& line) { throw Error(fmt::format("unexpected line '{}'", line)); }

bool starts_with_digit(const std::string& s) { return !s.empty() && std::isdigit(static_cast<unsigned char>(s[0])); }

bool is_rule(const std::string& line) {
  const auto w = line.find_first_not_of(" \t");
  return line.compare(w, 3, "---") == 0;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "<id> <state> ..." lines (sacct, squeue, bjobs, condor_q): words past the second are
// ignored (sacct prints "CANCELLED by 1000").
template <std::size_t N>
StatusReports two_columns(const std::string& out, const StateCode (&table)[N], std::string_view scheduler,
                          bool strip_plus, bool exactly_two) {
  StatusReports reports;
  for (const auto& line : lines(out)) {
    if (line.rfind("CLUSTER:", 0) == 0) continue;  // Slurm with --clusters
    auto w = words(line);
    if (w.size() < 2 || (exactly_two && w.size() != 2) || !starts_with_digit(w[0])) unexpected(line);
    std::string code = w[1];
    if (strip_plus && !code.empty() && code.back() == '+') code.pop_back();  // sacct's truncation mark
    reports.emplace_back(w[0], translate(table, scheduler, code));
  }
  return reports;
}

// The first match of `re` (group 1) on any line, "" if none.
std::string first_match(const std::string& out, const std::regex& re, std::size_t group = 1) {
  for (const auto& line : lines(out)) {
    std::smatch m;
    if (std::regex_search(line, m, re) && m.size() > group) return m[group].str();
  }
  return "";
}

}  // namespace

StatusReports parse_sacct(const std::string& out) { return two_columns(out, kSacctStates, "Slurm", true, false); }
StatusReports parse_squeue(const std::string& out) { return two_columns(out, kSqueueStates, "Slurm", false, true); }
StatusReports parse_bjobs(const std::string& out) { return two_columns(out, kLsfStates, "LSF", false, true); }
StatusReports parse_condor_q(const std::string& out) { return two_columns(out, kCondorStates, "HTCondor", false, true); }

StatusReports parse_pbs_qstat(const std::string& out) {
  // Job ID  Name  User  Time Use  S  Queue
  StatusReports reports;
  for (const auto& line : lines(out)) {
    const auto w = words(line);
    if (is_rule(line) || lower(w[0]) == "job") continue;
    if (w.size() != 6 || !starts_with_digit(w[0]) || w[4].size() != 1) unexpected(line);
    std::string id = w[0];
    if (id.back() == '*') id.pop_back();  // PBS Pro marks an id cut to the column's width
    reports.emplace_back(id, translate(kPbsStates, "PBS", w[4]));
  }
  return reports;
}

StatusReports parse_sge_qstat(const std::string& out) {
  // job-ID  prior  name  user  state  submit/start at (2 words)  [queue]  slots  [ja-task-ID]
  StatusReports reports;
  for (const auto& line : lines(out)) {
    const auto w = words(line);
    if (is_rule(line) || (!w.empty() && lower(w[0]) == "job-id")) continue;
    if (w.size() < 8 || !starts_with_digit(w[0])) unexpected(line);
    reports.emplace_back(w[0], translate(kSgeStates, "Grid Engine", lower(w[4])));
  }
  return reports;
}

std::string slurm_regex(const std::string& python_regex) {
  std::string re = python_regex;
  for (auto at = re.find("(?P<"); at != std::string::npos; at = re.find("(?P<")) {
    const auto close = re.find('>', at);
    if (close == std::string::npos) break;
    re.erase(at + 1, close - at);  // "(?P<id>" → "("
  }
  try {
    std::regex check(re);
  } catch (const std::regex_error& e) {
    throw ConfigurationError(fmt::format("SlurmProvider regex_job_id '{}' is not a valid regex: {}", python_regex, e.what()));
  }
  return re;
}

std::string slurm_job_id(const std::string& out, const std::string& regex) { return first_match(out, std::regex(regex)); }

std::string pbs_job_id(const std::string& out) {
  static const std::regex id(R"(^\s*(\d[^\s]*)\s*$)");
  return first_match(out, id);
}

std::string lsf_job_id(const std::string& out) {
  static const std::regex id(R"(Job <(\d+)> is submitted)", std::regex::icase);
  return first_match(out, id);
}

std::string condor_job_id(const std::string& out) {
  static const std::regex id(R"((\d+) job\(s\) submitted to cluster (\d+))");
  const std::string cluster = first_match(out, id, 2);
  return cluster.empty() ? "" : cluster + ".0";
}

}  // namespace pervade::detail
