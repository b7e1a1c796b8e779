// An integrity check for one part of the search index: every posting the FTS4 table holds
// (term, row, column, position; deleted rows left out) against the tokenized text of its
// content view, as order-independent checksums, plus the document counts.
//
// FTS4's own 'integrity-check' cannot be used: SQLite 3.15 decodes order=desc doclists with
// ascending deltas and calls every such index malformed. This reads the segments itself, from
// the documented FTS3/4 segment format, and checks every length it reads, so a damaged
// segment is reported, never trusted.
//
// Thread rule: the caller serialises use of the database.
#pragma once

#include <string>

#include "Database.h"

namespace sotto::search {

struct PartNames {
  const char* table;    // "search_recent"
  const char* content;  // its content view
  int prefix_bytes;     // the table's prefix index ("prefix=" option); 0: none
};

// An empty string when the index matches its content, else what is wrong.
Result<std::string> verify_part(db::Database& db, const PartNames& part);

}  // namespace sotto::search
