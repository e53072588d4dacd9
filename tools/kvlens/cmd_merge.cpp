// kvlens merge -o OUT SHARD_FILE...: joins the outputs of `--shard I/N` runs (kvlens/shard.h) into exactly the
// unsharded output: the records in the whole list's order, the shard-only fields and signature keys removed.
//
// Three kinds of shard file, told apart by their content:
//   records  coe -o, think -o: every line a record with "run" (signature + shard keys), "shard" and "index";
//   prep     probe prep -o: a meta line (settings, with meta.shard {i, n, items, data}), then records with "index";
//   embed    embed -o F.npy|F.jsonl: the shard's rows, beside a manifest F.shard.json (signature, global indices,
//            the data file's size and hash, so a stale manifest is refused).
// Refused, with one error line and no output written: a file that is not a shard output, shards of another run
// (model, settings, data or N), a shard given twice, a shard missing, an item twice or missing (a shard that did
// not finish), a torn line.
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
#include "run_signature.h"
#include "shard.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/hash.h"
#include "kvlens/npy.h"

using namespace kvlens;
using json = nlohmann::ordered_json;

namespace {

using KV = std::vector<std::pair<std::string, std::string>>;

KV split_run(const std::string & run) {
    KV kv;
    size_t p = 0;
    while (p < run.size()) {
        size_t e = run.find(';', p);
        if (e == std::string::npos) e = run.size();
        const std::string item = run.substr(p, e - p);
        const size_t eq = item.find('=');
        kv.emplace_back(item.substr(0, eq), eq == std::string::npos ? "" : item.substr(eq + 1));
        p = e + 1;
    }
    return kv;
}

bool is_shard_key(const std::string & k) {
    for (const char * s : cli::kShardKeys)
        if (k == s) return true;
    return false;
}

std::string join_run(const KV & kv) {
    std::string s;
    for (auto & [k, v] : kv) s += (s.empty() ? "" : ";") + k + "=" + v;
    return s;
}

std::string read_all(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot read " + path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The lines of a shard file; a last line without its newline is a shard killed mid-write.
std::vector<std::string> read_lines(const std::string & path) {
    const std::string all = read_all(path);
    if (!all.empty() && all.back() != '\n')
        throw Error(path + ": torn last line (the shard was stopped mid-write): rerun that shard (it resumes), then merge");
    std::vector<std::string> lines;
    size_t p = 0;
    while (p < all.size()) {
        const size_t nl = all.find('\n', p);
        lines.push_back(all.substr(p, nl - p));
        p = nl + 1;
    }
    return lines;
}

struct ShardFile {
    std::string path, kind;  // records | prep | embed-npy | embed-jsonl
    cli::Shard shard;
    size_t items = 0;
    KV sig;                    // what every shard of one run shares (the "shard" key removed)
    std::optional<json> header;  // prep: the meta line, shard removed
    std::vector<std::pair<size_t, std::string>> rows;  // global index -> the output line (text kinds)
    std::vector<size_t> indices;                       // embed-npy: the rows' global indices, in file order
    std::vector<float> data;
    size_t dim = 0;
};

[[noreturn]] void bad(const std::string & path, const std::string & why) { throw Error(path + ": " + why); }

// Takes "shard" (I/N) out of a signature and returns it; the rest stays for the comparison.
cli::Shard take_shard(KV & kv, size_t & items, const std::string & path) {
    cli::Shard s;
    bool have = false;
    items = 0;
    for (auto it = kv.begin(); it != kv.end();) {
        if (it->first == "shard") {
            s = cli::parse_shard(it->second);
            have = true;
            it = kv.erase(it);
            continue;
        }
        if (it->first == "shard_items") items = std::stoul(it->second);
        ++it;
    }
    if (!have) bad(path, "not a shard output (written without --shard)");
    return s;
}

size_t index_of(const json & j, const std::string & where) {
    if (!j.contains("index") || !j["index"].is_number_unsigned()) throw Error(where + ": a shard record without its \"index\"");
    return j["index"].get<size_t>();
}

ShardFile read_embed(const std::string & path, const std::string & manifest_path) {
    ShardFile f;
    f.path = path;
    json m = json::parse(read_all(manifest_path), nullptr, false);
    if (m.is_discarded() || !m.is_object() || m.value("kvlens", "") != "embed shard" || !m.contains("run") ||
        !m.contains("indices") || !m["indices"].is_array())
        bad(manifest_path, "not an embed shard manifest");
    f.kind = "embed-" + m.value("format", std::string("?"));
    f.sig = split_run(m["run"].get<std::string>());
    f.shard = take_shard(f.sig, f.items, path);
    const std::string bytes = read_all(path);
    if (std::to_string(bytes.size()) != m.value("bytes", std::string()) || cli::text_hash(bytes) != m.value("hash", std::string()))
        bad(path, "does not match its manifest " + manifest_path + " (rewritten since?): rerun that shard");
    for (auto & v : m["indices"]) f.indices.push_back(v.get<size_t>());
    if (f.kind == "embed-npy") {
        std::vector<size_t> shape;
        f.data = read_npy(path, shape);
        if (shape.size() != 2 || shape[0] != f.indices.size()) bad(path, "rows do not match its manifest");
        f.dim = shape[1];
    } else if (f.kind == "embed-jsonl") {
        auto lines = read_lines(path);
        if (lines.size() != f.indices.size()) bad(path, "rows do not match its manifest");
        for (size_t k = 0; k < lines.size(); ++k) {
            json j = json::parse(lines[k], nullptr, false);
            const std::string where = path + ":" + std::to_string(k + 1);
            if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
            if (index_of(j, where) != f.indices[k]) throw Error(where + ": index differs from the manifest's");
            f.rows.emplace_back(f.indices[k], lines[k]);
        }
    } else {
        bad(manifest_path, "unknown format");
    }
    return f;
}

ShardFile read_text(const std::string & path) {
    ShardFile f;
    f.path = path;
    auto lines = read_lines(path);
    size_t first = 0;
    while (first < lines.size() && lines[first].empty()) ++first;
    if (first == lines.size()) bad(path, "empty (not a shard output)");
    json h = json::parse(lines[first], nullptr, false);
    if (h.is_discarded() || !h.is_object()) bad(path, "not a JSONL shard output");
    std::string run;
    if (h.contains("meta")) {  // probe prep
        f.kind = "prep";
        json & sh = h["meta"]["shard"];
        if (!sh.is_object()) bad(path, "not a shard output (written without --shard)");
        f.shard.i = sh.value("i", -1);
        f.shard.n = sh.value("n", 0);
        f.items = sh.value("items", (size_t) 0);
        if (f.shard.n < 1 || f.shard.i < 0 || f.shard.i >= f.shard.n) bad(path, "malformed shard meta");
        sh.erase("i");
        for (auto & [k, v] : h["meta"].items()) f.sig.emplace_back(k, v.dump());
        h["meta"].erase("shard");
        f.header = h;
        ++first;
    } else {
        f.kind = "records";
        if (!h.contains("run") || !h["run"].is_string()) bad(path, "not a shard output (records without a run signature)");
        run = h["run"].get<std::string>();
        f.sig = split_run(run);
        f.shard = take_shard(f.sig, f.items, path);
    }
    KV unsharded;  // the run signature the unsharded records carry
    for (auto & kv : split_run(run))
        if (!is_shard_key(kv.first)) unsharded.push_back(kv);
    const std::string plain_run = join_run(unsharded);
    for (size_t k = first; k < lines.size(); ++k) {
        if (lines[k].empty()) continue;
        const std::string where = path + ":" + std::to_string(k + 1);
        json j = json::parse(lines[k], nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
        if (j.value("shard", std::string()) != f.shard.str()) throw Error(where + ": not a record of shard " + f.shard.str());
        if (f.kind == "records") {
            if (!j.contains("run") || j["run"] != run) throw Error(where + ": a record of another run (mixed files?)");
            j["run"] = plain_run;
        }
        const size_t idx = index_of(j, where);
        j.erase("shard");
        j.erase("index");
        f.rows.emplace_back(idx, j.dump(-1, ' ', false, json::error_handler_t::replace));
    }
    return f;
}

// The first setting two shards' signatures differ in, as "KEY (A vs B)"; "" when they agree.
std::string first_difference(const KV & a, const KV & b) {
    std::map<std::string, std::string> mb(b.begin(), b.end()), ma(a.begin(), a.end());
    for (auto & [k, v] : a) {
        auto it = mb.find(k);
        const std::string w = it == mb.end() ? "(unset)" : it->second;
        if (w != v) return k + " (" + v + " vs " + w + ")";
    }
    for (auto & [k, v] : b)
        if (!ma.count(k)) return k + " ((unset) vs " + v + ")";
    return "";
}

std::string describe(const std::string & key) {
    if (key.rfind("shard_data", 0) == 0 || key.rfind("shard ", 0) == 0) return "data differs: " + key;
    if (key.rfind("model", 0) == 0) return "model differs: " + key;
    return "settings differ: " + key;
}

int cmd_merge(int argc, char ** argv) {
    CLI::App app{"join the outputs of --shard I/N runs into the unsharded output (checked: same run, every shard and item once)",
                 "kvlens merge"};
    std::string out;
    std::vector<std::string> inputs;
    app.add_option("-o,--output", out, "the merged output (written whole, or not at all)")->required();
    app.add_option("shards", inputs, "the N shard files (any order)")->required();
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    {
        struct stat so{};
        const bool out_exists = stat(out.c_str(), &so) == 0;
        for (auto & p : inputs) {
            struct stat si{};
            if (stat(p.c_str(), &si) != 0) throw Error("cannot read " + p);
            if (p == out || (out_exists && si.st_dev == so.st_dev && si.st_ino == so.st_ino))
                throw Error("-o " + out + " is one of the shard files");
        }
    }
    check_writable(out);

    std::vector<ShardFile> files;
    for (auto & p : inputs) {
        struct stat st{};
        const std::string manifest = p + ".shard.json";
        files.push_back(stat(manifest.c_str(), &st) == 0 ? read_embed(p, manifest) : read_text(p));
    }
    const ShardFile & f0 = files[0];
    std::map<int, const ShardFile *> by_i;
    for (const ShardFile & f : files) {
        if (f.kind != f0.kind) throw Error(f.path + " is a " + f.kind + " shard, " + f0.path + " a " + f0.kind + " one");
        if (f.shard.n != f0.shard.n)
            throw Error(f.path + " is shard " + f.shard.str() + ", " + f0.path + " is " + f0.shard.str() +
                        ": shards of a split into another number of parts");
        const std::string d = first_difference(f0.sig, f.sig);
        if (!d.empty()) throw Error(f.path + " is not a shard of the run " + f0.path + " belongs to: " + describe(d));
        if (f.dim != f0.dim) throw Error(f.path + ": dim " + std::to_string(f.dim) + ", " + f0.path + ": " + std::to_string(f0.dim));
        auto [it, fresh] = by_i.emplace(f.shard.i, &f);
        if (!fresh) throw Error(it->second->path + " and " + f.path + " are both shard " + f.shard.str());
    }
    for (int i = 0; i < f0.shard.n; ++i)
        if (!by_i.count(i))
            throw Error("shard " + std::to_string(i) + "/" + std::to_string(f0.shard.n) + " is missing (" +
                        std::to_string(files.size()) + " of " + std::to_string(f0.shard.n) + " shard files given)");

    // every item exactly once, in its own shard
    const size_t n = f0.items;
    std::vector<const std::string *> line(n, nullptr);
    std::vector<std::pair<const ShardFile *, size_t>> row_at(n, {nullptr, 0});
    std::vector<bool> seen(n, false);
    for (const ShardFile & f : files) {
        std::vector<size_t> idx = f.indices;
        if (idx.empty())
            for (auto & r : f.rows) idx.push_back(r.first);
        for (size_t k = 0; k < idx.size(); ++k) {
            const size_t g = idx[k];
            if (g >= n) throw Error(f.path + ": item " + std::to_string(g) + " is past the run's " + std::to_string(n) + " items");
            if (!f.shard.owns(g)) throw Error(f.path + ": item " + std::to_string(g) + " is not shard " + f.shard.str() + "'s");
            if (seen[g]) throw Error(f.path + ": item " + std::to_string(g) + " twice");
            seen[g] = true;
            row_at[g] = {&f, k};
            if (!f.rows.empty()) line[g] = &f.rows[k].second;
        }
    }
    for (size_t g = 0; g < n; ++g)
        if (!seen[g])
            throw Error("item " + std::to_string(g) + " is missing from " + by_i.at((int) (g % f0.shard.n))->path +
                        " (that shard did not finish: rerun it, it resumes)");

    if (f0.kind == "embed-npy") {
        std::vector<float> all(n * f0.dim);
        for (size_t g = 0; g < n; ++g) {
            auto [f, k] = row_at[g];
            std::copy(f->data.begin() + k * f0.dim, f->data.begin() + (k + 1) * f0.dim, all.begin() + g * f0.dim);
        }
        write_npy(out, all.data(), {n, f0.dim});
    } else {
        write_file_atomic(out, [&](FILE * fp) {
            if (f0.header) {
                const std::string h = f0.header->dump() + "\n";
                write_all(fp, h.data(), h.size(), out);
            }
            for (size_t g = 0; g < n; ++g) {
                write_all(fp, line[g]->data(), line[g]->size(), out);
                write_all(fp, "\n", 1, out);
            }
        });
    }
    std::fprintf(stderr, "merge: %zu shards, %zu items -> %s\n", files.size(), n, out.c_str());
    return 0;
}

}  // namespace

KVLENS_COMMAND("merge", "join the outputs of --shard I/N runs into the unsharded output (checked)", cmd_merge);
