// What a peer wrote inside a ciphertext: text fields are checked by the SDK (libprotobuf no
// longer does, they are bytes on the wire), and libprotobuf's own log lines never reach the
// application's stderr.
#include "PeerContent.h"

#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "sotto/proto/content.pb.h"

namespace sotto {
namespace {

Bytes serialize(const google::protobuf::Message& m) {
  std::string s = m.SerializeAsString();
  return Bytes(s.begin(), s.end());
}

TEST(PeerContent, WellFormedTextAtEveryDepthIsRead) {
  content::Content c;
  auto* dm = c.mutable_data_message();
  dm->set_text("caf\xC3\xA9 \xF0\x9F\x98\x80");
  dm->mutable_quote()->set_text("earlier");
  auto* a = dm->add_attachments();
  a->set_file_name("r\xC3\xA9sum\xC3\xA9.pdf");
  a->set_key(std::string("\xFF\x00\xC0", 3));  // keys are bytes, not text: anything goes
  content::Content back;
  Status s = parse_from_peer(serialize(c), back);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(back.data_message().text(), dm->text());
  EXPECT_EQ(back.data_message().attachments(0).key().size(), 3u);
}

TEST(PeerContent, TextThatIsNotUtf8IsRefusedByItsPathWithNothingOnStderr) {
  struct Case {
    std::function<void(content::Content&)> spoil;
    std::string path;
  };
  const std::string bad = "caf\xC3";  // cut short
  std::vector<Case> cases = {
      {[&](auto& c) { c.mutable_data_message()->set_text(bad); }, "data_message.text"},
      {[&](auto& c) { c.mutable_data_message()->mutable_quote()->set_text(bad); },
       "data_message.quote.text"},
      {[&](auto& c) {
         c.mutable_data_message()->add_attachments()->set_file_name("fine");
         c.mutable_data_message()->add_attachments()->set_content_type(bad);
       },
       "data_message.attachments[1].content_type"},
      {[&](auto& c) { c.mutable_data_message()->mutable_reaction()->set_emoji("\xED\xA0\x80"); },
       "data_message.reaction.emoji"},
      {[&](auto& c) {
         auto* u = c.mutable_group_update();
         u->set_name("team");
         u->add_members()->set_handle("bob");
         u->add_members()->set_handle("\xC0\x80");
       },
       "group_update.members[1].handle"},
      {[&](auto& c) { c.mutable_sync()->mutable_sent()->set_destination_handle(bad); },
       "sync.sent.destination_handle"},
  };
  for (const auto& k : cases) {
    content::Content c;
    k.spoil(c);
    content::Content back;
    ::testing::internal::CaptureStderr();
    Status s = parse_from_peer(serialize(c), back);
    std::string err = ::testing::internal::GetCapturedStderr();
    ASSERT_FALSE(s.ok()) << k.path;
    EXPECT_EQ(s.code(), ErrorCode::kInvalidMessage);
    EXPECT_NE(s.error().message.find("the field " + k.path + " "), std::string::npos)
        << s.error().message;
    EXPECT_EQ(s.error().message.find(bad), std::string::npos) << "the message quotes the text";
    EXPECT_EQ(err, "") << k.path;
  }
}

TEST(PeerContent, BytesThatAreNoContentAreRefused) {
  const uint8_t junk[] = {0x0A, 0xFF, 0xFF, 0xFF};  // a length running past the end
  content::Content c;
  Status s = parse_from_peer(ByteView(junk, sizeof junk), c);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kInvalidMessage);
  EXPECT_NE(s.error().message.find("Content is not readable"), std::string::npos)
      << s.error().message;
}

TEST(PeerContent, LibraryLinesGoToEveryRouteAliveAndNeverToStderr) {
  std::vector<std::string> first, second;
  ::testing::internal::CaptureStderr();
  {
    LibraryLogRoute a([&](const std::string& l) { first.push_back(l); });
    {
      LibraryLogRoute b([&](const std::string& l) { second.push_back(l); });
      GOOGLE_LOG(ERROR) << "one";
    }
    GOOGLE_LOG(WARNING) << "two";
  }
  GOOGLE_LOG(ERROR) << "three, with nobody to tell";
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "");
  ASSERT_GE(first.size(), 2u);
  EXPECT_NE(first[0].find("protobuf error"), std::string::npos) << first[0];
  EXPECT_NE(first[0].find("one"), std::string::npos);
  EXPECT_NE(first[1].find("two"), std::string::npos);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_NE(second[0].find("one"), std::string::npos);
  for (const auto& l : first) EXPECT_EQ(l.find("three"), std::string::npos);
}

}  // namespace
}  // namespace sotto
