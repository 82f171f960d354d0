#pragma once
// Strong id types: a TaskId cannot be passed where a BlockId is expected.
#include <cstdint>
#include <functional>

namespace pervade {

template <class Tag>
struct StrongId {
  std::uint64_t value = 0;
  constexpr auto operator<=>(const StrongId&) const = default;
};

using TaskId = StrongId<struct TaskIdTag>;

}  // namespace pervade

template <class Tag>
struct std::hash<pervade::StrongId<Tag>> {
  std::size_t operator()(pervade::StrongId<Tag> id) const noexcept { return std::hash<std::uint64_t>{}(id.value); }
};
