// Push endpoints and wake-ups (protocol.md 5.20 and 10).
#include "Relay.h"
#include "relay/Common.h"

namespace sotto::relay {

void Relay::op_set_push_endpoint(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  std::string url = r.set_push_endpoint().url();
  const bool clear = r.set_push_endpoint().clear();
  if (clear && !url.empty())
    return refuse(p, id, op, bad_request("set either url or clear, not both"));
  if (!clear && url.empty())
    return refuse(p, id, op, bad_request("url is empty; set clear to remove the endpoint"));
  if (!clear) {
    Refusal why;
    if (!parse_push_url(url, config_.push_allow_http, config_.push_allow_private,
                        config_.limits.max_push_url_bytes, why))
      return refuse(p, id, op, why);
  }
  submit(
      p, id, op,
      [p, url](Store& s) -> Status { return s.set_push_url(p->account, p->device, url); },
      [this, p, id, op] {
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        answer(p, std::move(resp), op);
      });
}

void Relay::wake(const Bytes& account, uint32_t device, const std::string& url) {
  // On the writer thread, while the Server may clear the pusher as it stops: read it once.
  Pusher* pusher = pusher_.load();
  if (!pusher) return;
  if (!registry_.wake_due(device_key(account, device), clock_(), config_.push_coalesce_ms)) {
    metrics_.wakeups_coalesced.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  pusher->wake(url, [this, account, device, url](int status) {
    if (status >= 200 && status < 300) {
      metrics_.wakeups_sent.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    metrics_.wakeups_failed.fetch_add(1, std::memory_order_relaxed);
    if (status == 404 || status == 410) {
      // The endpoint is gone for good: forget it unless the device set a new one meanwhile.
      store_.submit(
          [account, device, url](Store& s) -> Status {
            SOTTO_TRY_ASSIGN(auto d, s.find_device(account, device));
            if (d && d->push_url == url) return s.set_push_url(account, device, "");
            return {};
          },
          nullptr);
    }
  });
}

}  // namespace sotto::relay
