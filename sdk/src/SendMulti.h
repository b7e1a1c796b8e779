// The wire form of a SEND_MULTI, built so that a group's next message reuses the work of the
// last one: the recipient list of a 1,000-device batch is ~25 KB of protobuf, and encoding it
// per message would cost more than the Sender Key encryption itself.
//
// Protobuf lets a message's fields arrive in any order and a repeated field's entries be
// concatenated, so a SendMultiRequest is its small fields (message id, ciphertext, flags)
// followed by the encoded recipients, and a Request is its head (id, op) followed by the body.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/Types.h"
#include "sotto/proto/wire.pb.h"

namespace sotto {

struct MultiRecipientEntry {
  std::array<uint8_t, 16> account_id{};
  uint32_t device_id = 0;
  uint32_t registration_id = 0;
};

// An account id's 32 hex digits as its 16 bytes; false when they are not that.
bool account_id_from_hex(std::string_view hex, std::array<uint8_t, 16>& out);

// A group send's devices as SEND_MULTI recipients: the sender's own account first (batch 0
// carries the own devices, protocol.md 5.16), then whole accounts by account id. kInternal for an
// account id that is not 32 hex digits; errors of `registration_id` are passed on.
Result<std::vector<MultiRecipientEntry>> multi_recipients(
    const std::vector<Address>& devices, const std::string& self_account,
    const std::function<Result<uint32_t>(const Address&)>& registration_id);

// Where a sorted recipient list splits into SEND_MULTI batches of at most `max` devices
// without splitting an account (an account with more than `max` devices gets a batch of its
// own): the end index of each batch.
std::vector<size_t> multi_batch_ends(const std::vector<MultiRecipientEntry>& sorted, size_t max);

// Recipients encoded as the `recipients` field of SendMultiRequest.
std::string encode_recipients(const MultiRecipientEntry* begin, const MultiRecipientEntry* end);

// A group's recipient batches as its last send encoded them. A send to the same devices, with
// the same registration ids (`epoch` names a state of the caller's registration id cache),
// reuses them; anything else encodes again.
class GroupRecipients {
 public:
  // Returns whether it encoded. On an error the last batches are gone.
  Result<bool> assign(const std::vector<Address>& devices, const std::string& self_account,
                      uint64_t epoch,
                      const std::function<Result<uint32_t>(const Address&)>& registration_id,
                      size_t max_batch);
  // Each batch's encoded recipients, in send order.
  const std::vector<std::string>& batches() const { return batches_; }

 private:
  std::vector<Address> devices_;
  std::string self_;
  uint64_t epoch_ = 0;
  size_t max_batch_ = 0;
  bool valid_ = false;
  std::vector<std::string> batches_;
};

// The body of a SEND_MULTI: `head`'s fields (it must have no recipients) and the recipients.
std::string send_multi_body(const wire::SendMultiRequest& head, std::string_view recipients);

// Appends field `field` of wire type LEN holding `bytes` to a serialized message.
void append_length_delimited(std::string& out, uint32_t field, std::string_view bytes);

// A Frame carrying `head` (its body unset) with `body` as its typed body for head.op(), as
// Frame{request = head + body}.SerializeAsString() would be.
Bytes encode_request_frame(const wire::Request& head, std::string_view body);

}  // namespace sotto
