#pragma once
// Bytes as lowercase hex, as Python's bytes.hex() shows them (memo keys as Parsl's hashsum, pool
// ids). Internal: any thread.
#include <string>
#include <string_view>

namespace pervade::detail {

inline std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

}  // namespace pervade::detail
