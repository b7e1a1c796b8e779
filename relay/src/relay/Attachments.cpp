// Attachments (protocol.md 5.21): upload slots; the bytes go over HTTP, in the
// Server.
#include "Relay.h"
#include "relay/Common.h"

namespace sotto::relay {

void Relay::op_attachment_upload(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  uint64_t size = r.attachment_upload().size_bytes();
  const Limits& l = config_.limits;
  if (size == 0) return refuse(p, id, op, bad_request("size_bytes must be at least 1"));
  if (size > l.attachment_max_bytes)
    return refuse(p, id, op,
                  too_large_bytes("the attachment is larger than this relay accepts",
                                  l.attachment_max_bytes));
  uint64_t now = clock_();
  std::string acct = account_key(p->account);
  if (uint64_t wait = attachment_account_.take(acct, now))
    return rate_limited(p, id, op, wait, "attachment_upload");
  if (uint64_t wait = attachment_bytes_.take(acct, now, static_cast<double>(size)))
    return rate_limited(p, id, op, wait, "attachment_bytes");
  AttachmentRecord slot;
  slot.id = random_hex(16);
  slot.account_id = p->account;
  slot.device_id = p->device;
  slot.size_bytes = size;
  slot.upload_expires_at_ms = now + l.attachment_slot_ms;
  submit(
      p, id, op, [slot](Store& s) -> Status { return s.create_attachment(slot); },
      [this, p, id, op, slot] {
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        auto* out = resp.mutable_attachment_upload();
        out->set_attachment_id(slot.id);
        out->set_path("/v1/attachments/" + slot.id);
        out->set_upload_expires_at_ms(slot.upload_expires_at_ms);
        out->set_retention_ms(config_.limits.attachment_retention_ms);
        out->set_max_bytes(config_.limits.attachment_max_bytes);
        answer(p, std::move(resp), op);
      });
}

}  // namespace sotto::relay
