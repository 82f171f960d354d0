// pervade-exex-pool's messages over MPI: see exex_link.hpp.
#include "pool/exex_link.hpp"

#include <algorithm>

namespace pervade::pool::exex {

namespace {
constexpr int kTag = 7;
}

RankLink::RankLink() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  // An error involving one peer must not end this process (the default handler aborts the job).
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

void RankLink::send(int to, std::string bytes) {
  sending_.push_back(Sending{to, MPI_REQUEST_NULL, std::move(bytes)});
  Sending& s = sending_.back();
  MPI_Isend(s.bytes.data(), static_cast<int>(s.bytes.size()), MPI_BYTE, to, kTag, MPI_COMM_WORLD, &s.request);
}

std::optional<std::pair<int, std::string>> RankLink::receive() {
  int flag = 0;
  MPI_Message message;
  MPI_Status status;
  if (MPI_Improbe(MPI_ANY_SOURCE, kTag, MPI_COMM_WORLD, &flag, &message, &status) != MPI_SUCCESS || !flag)
    return std::nullopt;
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  std::string bytes(static_cast<std::size_t>(count), '\0');
  MPI_Mrecv(bytes.data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE);
  return std::make_pair(status.MPI_SOURCE, std::move(bytes));
}

std::size_t RankLink::progress() {
  // Sends complete roughly in order: test from the front, stop at the first one still going.
  while (!sending_.empty()) {
    int done = 0;
    MPI_Test(&sending_.front().request, &done, MPI_STATUS_IGNORE);
    if (!done) break;
    sending_.pop_front();
  }
  return sending_.size();
}

void RankLink::forget(int rank) {
  for (auto it = sending_.begin(); it != sending_.end();) {
    if (it->to != rank) {
      ++it;
      continue;
    }
    abandoned_.push_back(std::move(*it));
    it = sending_.erase(it);
  }
}

}  // namespace pervade::pool::exex
