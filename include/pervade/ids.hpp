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

// Parsl's number of a try, from the engine's try_id: the engine counts tries from 1 (0 before the
// first launch), Parsl from 0 (also 0 before the first launch). Front ends and observers show it.
constexpr std::uint32_t parsl_try_id(std::uint32_t try_id) { return try_id == 0 ? 0 : try_id - 1; }

}  // namespace pervade

template <class Tag>
struct std::hash<pervade::StrongId<Tag>> {
  std::size_t operator()(pervade::StrongId<Tag> id) const noexcept { return std::hash<std::uint64_t>{}(id.value); }
};
