#pragma once
// Reading what the schedulers' commands print: job ids from submit commands, job states from
// status commands, each scheduler's states mapped onto JobState. Pure functions (any thread),
// tested against output samples in tests/cpp/data/.
#include <string>
#include <utility>
#include <vector>

#include "pervade/provider.hpp"

namespace pervade::detail {

using StatusReports = std::vector<std::pair<std::string, JobStatus>>;

// Status command output → (printed job id, status) per job. Throw pervade::Error naming the
// first line that is not in the command's format.
StatusReports parse_sacct(const std::string& out);        // sacct -X --noheader --format=jobid,state%20
StatusReports parse_squeue(const std::string& out);       // squeue --noheader --format='%i %t'
StatusReports parse_pbs_qstat(const std::string& out);    // qstat <ids> (Torque, PBS Pro; default table)
StatusReports parse_sge_qstat(const std::string& out);    // qstat (Grid Engine)
StatusReports parse_bjobs(const std::string& out);        // bjobs -noheader -o 'jobid stat'
StatusReports parse_condor_q(const std::string& out);     // condor_q <ids> -af:jr JobStatus

// Submit command output → job id, "" if none is found.
std::string slurm_job_id(const std::string& out, const std::string& regex);  // sbatch
std::string pbs_job_id(const std::string& out);     // qsub (Torque, PBS Pro, Grid Engine -terse)
std::string lsf_job_id(const std::string& out);     // bsub: "Job <123> is submitted to ..."
std::string condor_job_id(const std::string& out);  // condor_submit: "1 job(s) submitted to cluster 42." → "42.0"

// The regex of SlurmProvider's regex_job_id in std::regex syntax: Python's "(?P<id>" becomes
// a plain group. Throws ConfigurationError if it does not compile.
std::string slurm_regex(const std::string& python_regex);

}  // namespace pervade::detail
