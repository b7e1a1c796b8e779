#include "SendMulti.h"

#include <algorithm>

namespace sotto {

namespace {

constexpr uint32_t kLen = 2;     // wire type of bytes, strings and messages
constexpr uint32_t kVarint = 0;  // wire type of integers

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_tag(std::string& out, uint32_t field, uint32_t type) {
  put_varint(out, (uint64_t{field} << 3) | type);
}

// A proto3 integer field: left out when zero, as the generated code does.
void put_uint(std::string& out, uint32_t field, uint32_t v) {
  if (v == 0) return;
  put_tag(out, field, kVarint);
  put_varint(out, v);
}

}  // namespace

bool account_id_from_hex(std::string_view hex, std::array<uint8_t, 16>& out) {
  Bytes bytes;
  if (hex.size() != 2 * out.size() || !from_hex(hex, bytes)) return false;
  std::copy(bytes.begin(), bytes.end(), out.begin());
  return true;
}

Result<std::vector<MultiRecipientEntry>> multi_recipients(
    const std::vector<Address>& devices, const std::string& self_account,
    const std::function<Result<uint32_t>(const Address&)>& registration_id) {
  std::array<uint8_t, 16> self{};
  if (!account_id_from_hex(self_account, self))
    return make_error(ErrorCode::kInternal, "this account's id is not 32 hex digits");
  std::vector<MultiRecipientEntry> out;
  out.reserve(devices.size());
  for (const auto& d : devices) {
    MultiRecipientEntry e;
    if (!account_id_from_hex(d.account, e.account_id))
      return make_error(ErrorCode::kInternal,
                        "a recipient's account id is not 32 hex digits: " + d.account);
    e.device_id = d.device_id;
    SOTTO_TRY_ASSIGN(e.registration_id, registration_id(d));
    out.push_back(e);
  }
  std::stable_sort(out.begin(), out.end(),
                   [&](const MultiRecipientEntry& a, const MultiRecipientEntry& b) {
                     bool sa = a.account_id == self, sb = b.account_id == self;
                     if (sa != sb) return sa;
                     return a.account_id < b.account_id;
                   });
  return out;
}

std::vector<size_t> multi_batch_ends(const std::vector<MultiRecipientEntry>& sorted, size_t max) {
  std::vector<size_t> ends;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size()) {
      size_t k = j;
      while (k < sorted.size() && sorted[k].account_id == sorted[j].account_id) ++k;
      if (k - i > max && j > i) break;
      j = k;
    }
    ends.push_back(j);
    i = j;
  }
  return ends;
}

std::string encode_recipients(const MultiRecipientEntry* begin, const MultiRecipientEntry* end) {
  std::string out;
  out.reserve(static_cast<size_t>(end - begin) * 28);
  std::string one;
  const uint32_t recipients_field = wire::SendMultiRequest::kRecipientsFieldNumber;
  for (const auto* e = begin; e != end; ++e) {
    one.clear();
    append_length_delimited(one, wire::MultiRecipient::kAccountIdFieldNumber,
                            std::string_view(reinterpret_cast<const char*>(e->account_id.data()),
                                             e->account_id.size()));
    put_uint(one, wire::MultiRecipient::kDeviceIdFieldNumber, e->device_id);
    put_uint(one, wire::MultiRecipient::kRegistrationIdFieldNumber, e->registration_id);
    append_length_delimited(out, recipients_field, one);
  }
  return out;
}

Result<bool> GroupRecipients::assign(
    const std::vector<Address>& devices, const std::string& self_account, uint64_t epoch,
    const std::function<Result<uint32_t>(const Address&)>& registration_id, size_t max_batch) {
  if (valid_ && epoch == epoch_ && max_batch == max_batch_ && self_account == self_ &&
      devices == devices_)
    return false;
  valid_ = false;
  batches_.clear();
  SOTTO_TRY_ASSIGN(auto sorted, multi_recipients(devices, self_account, registration_id));
  size_t i = 0;
  for (size_t j : multi_batch_ends(sorted, max_batch)) {
    batches_.push_back(encode_recipients(sorted.data() + i, sorted.data() + j));
    i = j;
  }
  devices_ = devices;
  self_ = self_account;
  epoch_ = epoch;
  max_batch_ = max_batch;
  valid_ = true;
  return true;
}

std::string send_multi_body(const wire::SendMultiRequest& head, std::string_view recipients) {
  std::string out;
  out.reserve(head.ByteSizeLong() + recipients.size());
  head.AppendToString(&out);
  out.append(recipients);
  return out;
}

void append_length_delimited(std::string& out, uint32_t field, std::string_view bytes) {
  put_tag(out, field, kLen);
  put_varint(out, bytes.size());
  out.append(bytes);
}

Bytes encode_request_frame(const wire::Request& head, std::string_view body) {
  // Request's typed body for op N is field 100 + N (protocol.md 3.2). Built in one buffer:
  // the frame's tag and length, the head, the body's tag and length, the body.
  std::string request = head.SerializeAsString();
  put_tag(request, 100 + static_cast<uint32_t>(head.op()), kLen);
  put_varint(request, body.size());
  std::string prefix;
  put_tag(prefix, wire::Frame::kRequestFieldNumber, kLen);
  put_varint(prefix, request.size() + body.size());
  Bytes frame;
  frame.reserve(prefix.size() + request.size() + body.size());
  frame.insert(frame.end(), prefix.begin(), prefix.end());
  frame.insert(frame.end(), request.begin(), request.end());
  frame.insert(frame.end(), body.begin(), body.end());
  return frame;
}

}  // namespace sotto
