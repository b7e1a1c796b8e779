#include "Backend.h"

#include <QtConcurrent/QtConcurrent>

namespace sotto::desktop {

// Runs on the GUI thread (the executor posts there); forwards to the Backend's signals.
class Backend::Listener : public ClientListener {
 public:
  explicit Listener(Backend* b) : b_(b) {}
  void on_message(const Message& m) override { emit b_->message_received(m); }
  void on_message_status(ConversationId c, const std::string& id, MessageStatus s) override {
    emit b_->message_status(c, QString::fromStdString(id), s);
  }
  void on_connection_state(ConnectionState s, const std::string& detail) override {
    b_->state_ = s;
    emit b_->connection_changed(s, QString::fromStdString(detail));
  }
  void on_identity_changed(const IdentityChange& c) override {
    emit b_->identity_changed(QString::fromStdString(c.account), QString::fromStdString(c.handle));
  }
  void on_devices_changed() override { emit b_->devices_changed(); }
  void on_message_changed(const Message& m) override { emit b_->message_changed(m); }
  void on_message_removed(ConversationId c, const std::string& id) override {
    emit b_->message_removed(c, QString::fromStdString(id));
  }
  void on_conversation_changed(ConversationId c) override { emit b_->conversation_changed(c); }
  void on_typing(ConversationId c, const std::string& account, bool typing) override {
    emit b_->typing(c, QString::fromStdString(account), typing);
  }
  void on_presence(const std::string& account, bool online, uint64_t last_seen_ms) override {
    emit b_->presence(QString::fromStdString(account), online, last_seen_ms);
  }

 private:
  Backend* b_;
};

Backend::Backend(QObject* parent) : QObject(parent) {
  local_pool_.setMaxThreadCount(1);
  remote_pool_.setMaxThreadCount(4);
}

Backend::~Backend() {
  stopping_ = true;
  local_pool_.clear();
  remote_pool_.clear();
  local_pool_.waitForDone();
  remote_pool_.waitForDone();
  // Listener calls still queued to this object are dropped with it; none run after this.
  client_.reset();
}

void Backend::set_account(const AccountInfo& info) {
  account_ = QString::fromStdString(info.account);
  handle_ = QString::fromStdString(info.handle);
  emit account_ready();
}

void Backend::open(const QString& profile_dir, const QString& passphrase, const QString& relay_url,
                   const QString& device_name, std::function<void(Status)> done) {
  struct Opened {
    std::unique_ptr<Client> client;
    std::optional<AccountInfo> account;
    Status status;
  };
  std::string dir = profile_dir.toStdString();
  SecureBytes secret = SecureBytes::from_string(passphrase.toStdString());
  ClientOptions options;
  options.relay_url = relay_url.toStdString();
  options.device_name = device_name.toStdString();
  options.executor = [this](std::function<void()> fn) {
    QMetaObject::invokeMethod(this, std::move(fn), Qt::QueuedConnection);
  };
  QPointer<Backend> self(this);
  // Argon2id takes a tenth of a second and 64 MiB: never on the GUI thread.
  auto future =
      QtConcurrent::run(&local_pool_, [dir, secret, options]() -> std::shared_ptr<Opened> {
        auto out = std::make_shared<Opened>();
        auto profile = Profile::open(dir, secret);
        if (!profile.ok()) {
          out->status = profile.error();
          return out;
        }
        auto client = Client::create(std::move(*profile), options);
        if (!client.ok()) {
          out->status = client.error();
          return out;
        }
        out->client = std::move(*client);
        if (auto acct = out->client->account(); acct.ok()) {
          out->account = *acct;
          if (auto s = out->client->connect(); !s.ok()) out->status = s.error();
        }
        return out;
      });
  future.then(this, [this, done](std::shared_ptr<Opened> opened) {
    if (opened->client) {
      client_ = std::move(opened->client);
      listener_ = std::make_shared<Listener>(this);
      client_->set_listener(listener_);
      state_ = client_->connection_state();
    }
    done(opened->status);
    if (client_ && opened->account) set_account(*opened->account);
  });
}

}  // namespace sotto::desktop
