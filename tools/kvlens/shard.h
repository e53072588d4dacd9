// --shard I/N: data-parallel offline runs. A shard answers the items whose 0-based index in the run's list is
// ≡ I (mod N) and writes its own output; `kvlens merge` joins the N outputs into exactly the unsharded one.
//
// Records (coe -o, think -o): a shard's records carry two fields more than the unsharded ones, "shard" ("I/N")
// and "index" (the item's place in the whole list), and its run signature three keys more, appended last:
// shard=I/N, shard_items=M (the whole list's length, so merge sees a missing tail) and shard_data=H (a hash of
// the items, so shards of other data are told apart). probe prep keeps the same in its meta line (meta.shard
// {i, n, items, data}) and tags its records with "shard" and "index". merge checks all of it and removes it again.
//
// Embeddings (embed -o, bench classify --embed-dir): a shard writes its rows (in its own order) and, beside the
// file F, a manifest F.shard.json: {"kvlens": "embed shard", "format": "npy"|"jsonl", "run": signature with the
// shard keys, "indices": the rows' global indices, "bytes"/"hash": of F, so a file rewritten since is refused,
// "tokens"/"truncated": the shard's counts}. Without --shard nothing of this is written.
#pragma once
#include <CLI/CLI.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_signature.h"

namespace kvlens::cli {

// The run-signature keys only shards have (merge strips them).
inline const char * const kShardKeys[] = {"shard", "shard_items", "shard_data"};

struct Shard {
    int i = 0, n = 0;  // n == 0: not sharded
    bool on() const { return n > 0; }
    bool owns(size_t index) const { return !on() || index % (size_t) n == (size_t) i; }
    std::string str() const { return std::to_string(i) + "/" + std::to_string(n); }
    // Refuses a shard with no items (N above the list's length): merge could not tell it from a missing one.
    void check_items(size_t items) const;
    // Appends the shard keys to a run signature (nothing when not sharded).
    void sign(RunSignature & sig, size_t items, const std::string & data_hash) const;
    // Adds "shard" and "index" at the end of a record (nothing when not sharded).
    void tag(nlohmann::ordered_json & record, size_t index) const;
};

// "I/N" with 0 <= I < N (decimal digits only); anything else: kvlens::Error naming the flag.
Shard parse_shard(const std::string & spec);
void add_shard_flag(CLI::App & app, std::string & spec);
// After parsing: the --shard given (checked), or "not sharded" when the flag is absent.
Shard shard_from(const CLI::App & app, const std::string & spec);

// A hash of a list of texts (the items a run answers): the data's identity in a shard's signature.
std::string items_hash(const std::vector<std::string> & parts);

// ---- embedding shards ------------------------------------------------------------------------------------------

std::string manifest_path(const std::string & data_path);  // F -> F.shard.json
// Writes F.shard.json for the embedding file F just written (atomically; after F, so a manifest never describes
// a file that is not there yet).
void write_embed_manifest(const std::string & data_path, const std::string & format, const RunSignature & sig,
                          const std::vector<size_t> & indices, long long tokens, int truncated);

// ---- merging ---------------------------------------------------------------------------------------------------

using SigKV = std::vector<std::pair<std::string, std::string>>;
SigKV split_run(const std::string & run);
// The first key two signatures differ in, as "KEY (A vs B)"; "" when they agree.
std::string first_difference(const SigKV & a, const SigKV & b);

struct MergedShards {
    std::string kind;  // records | prep | embed-npy | embed-jsonl
    int n_shards = 0;
    size_t items = 0;
    SigKV sig;  // what every shard of the run shares: the signature without "shard" (shard_items / shard_data kept)
    std::optional<nlohmann::ordered_json> header;  // prep: the unsharded meta line
    std::vector<std::string> lines;                // text kinds: the unsharded lines, in order (no newline)
    std::vector<float> data;                       // embed-npy: items x dim
    size_t dim = 0;
    long long tokens = 0;  // embed kinds: the shards' sums
    int truncated = 0;
};

// Reads and checks the N shard files of one run (any order) and joins them in the whole list's order. Refused
// (kvlens::Error, one line): a file that is not a shard output, shards of another run (model, settings, data, N
// or kind), a shard given twice or missing, an item twice, missing or in the wrong shard, a torn line.
MergedShards merge_shards(const std::vector<std::string> & paths);
// Writes the merged output: temporary file, then rename (kvlens/atomic_file.h).
void write_merged(const MergedShards & m, const std::string & out);

}  // namespace kvlens::cli
