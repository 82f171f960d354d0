// Messages between the ranks of pervade-exex-pool: see exex_wire.hpp. Little-endian fixed-size
// header (type, slot, a, b, c, string count), then each string as (u32 length, bytes); a data
// message then has its pieces, each (u32 slot, u32 length, bytes).
#include "pool/exex_wire.hpp"

#include <cstring>

namespace pervade::pool::exex {

namespace {

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof v);  // x86-64 and aarch64 are little-endian, as are all ranks of one job
  out.append(b, sizeof b);
}

template <typename T>
bool get(std::string_view& in, T* v) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(v, in.data(), sizeof(T));
  in.remove_prefix(sizeof(T));
  return true;
}

std::string header(const Message& m) {
  std::string out;
  out.reserve(kHeaderSize);
  put(out, static_cast<std::uint8_t>(m.type));
  put(out, m.slot);
  put(out, m.a);
  put(out, m.b);
  put(out, m.c);
  put(out, static_cast<std::uint32_t>(m.strings.size()));
  for (const std::string& s : m.strings) {
    put(out, static_cast<std::uint32_t>(s.size()));
    out += s;
  }
  return out;
}

}  // namespace

std::string encode(const Message& m) {
  std::string out = header(m);
  out.append(m.data);
  return out;
}

void DataBatch::append(std::uint32_t slot, std::string_view bytes) {
  if (bytes_.empty()) {
    Message m;
    m.type = Type::data;
    bytes_ = encode(m);
  }
  put(bytes_, slot);
  put(bytes_, static_cast<std::uint32_t>(bytes.size()));
  bytes_.append(bytes);
}

std::string DataBatch::take() {
  std::string out;
  out.swap(bytes_);
  return out;
}

bool next_piece(std::string_view* rest, std::uint32_t* slot, std::string_view* bytes, bool* malformed) {
  *malformed = false;
  if (rest->empty()) return false;
  std::uint32_t len = 0;
  if (!get(*rest, slot) || !get(*rest, &len) || len > rest->size()) {
    *malformed = true;
    return false;
  }
  *bytes = rest->substr(0, len);
  rest->remove_prefix(len);
  return true;
}

std::optional<Message> decode(std::string_view in) {
  Message m;
  std::uint8_t type = 0;
  std::uint32_t count = 0;
  if (!get(in, &type) || !get(in, &m.slot) || !get(in, &m.a) || !get(in, &m.b) || !get(in, &m.c) || !get(in, &count))
    return std::nullopt;
  if (type < static_cast<std::uint8_t>(Type::hello) || type > static_cast<std::uint8_t>(Type::stopped))
    return std::nullopt;
  m.type = static_cast<Type>(type);
  if (count > in.size() / 4) return std::nullopt;  // each string takes 4 bytes at least
  m.strings.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t len = 0;
    if (!get(in, &len) || len > in.size()) return std::nullopt;
    m.strings.emplace_back(in.substr(0, len));
    in.remove_prefix(len);
  }
  if (m.type != Type::data && !in.empty()) return std::nullopt;
  m.data = in;
  return m;
}

}  // namespace pervade::pool::exex
