// Request parsing for kvlens serve (serve_request.h): every field type- and range-checked, llama-server's names.
#include "serve_request.h"

#include <filesystem>
#include <optional>

#include "kvlens/pooling.h"
#include "validate.h"

namespace kvlens::serve {

namespace {

const json * field(const json & b, const char * k) {
    auto it = b.find(k);
    return it == b.end() || it->is_null() ? nullptr : &*it;
}
template <class P, class F>
void typed(const json & b, const char * k, P && ok, F && set, const char * what) {
    if (const json * v = field(b, k)) {
        if (!ok(*v)) throw bad_request(std::string("'") + k + "' must be " + what);
        set(*v);
    }
}
bool is_bool(const json & v) { return v.is_boolean(); }
bool is_str(const json & v) { return v.is_string(); }
bool is_int(const json & v) { return v.is_number_integer() || v.is_number_unsigned(); }
// An integer field as long long; unsigned values above LLONG_MAX are out of every range here.
long long int_of(const json & v) { return v.is_number_unsigned() && v.get<unsigned long long>() > (1ull << 62) ? (1ll << 62) : v.get<long long>(); }
bool finite_number(const json & v) { return v.is_number() && std::isfinite(v.get<double>()); }

void parse_sampling(const json & b, Job & job, const SamplingParams & def) {
    job.sampling = def;
    if (const json * v = field(b, "temperature")) {
        // as the CLI's --temp: [0, 100] (a finite double above FLT_MAX became an infinite float; found by fuzz_serve_request)
        if (!finite_number(*v) || v->get<double>() < 0 || v->get<double>() > 100) throw bad_request("'temperature' must be a number in [0, 100]");
        job.sampling.temp = v->get<float>();
    }
    if (const json * v = field(b, "top_p")) {
        if (!finite_number(*v) || v->get<double>() < 0 || v->get<double>() > 1) throw bad_request("'top_p' must be a number in [0, 1]");
        job.sampling.top_p = v->get<float>();
    }
    if (const json * v = field(b, "top_k")) {
        if (!is_int(*v) || int_of(*v) < 0 || int_of(*v) > (1 << 30)) throw bad_request("'top_k' must be an integer >= 0");
        job.sampling.top_k = (int) int_of(*v);
    }
    if (const json * v = field(b, "seed")) {
        if (!is_int(*v)) throw bad_request("'seed' must be an integer");
        job.sampling.seed = (uint32_t) v->get<unsigned long long>();
    }
    for (const char * k : {"max_tokens", "max_completion_tokens", "n_predict"}) {
        if (const json * v = field(b, k)) {
            if (!is_int(*v) || int_of(*v) < -1 || int_of(*v) == 0 || int_of(*v) > (1 << 30))
                throw bad_request(std::string("'") + k + "' must be a positive integer");
            job.max_tokens = (int) int_of(*v);
        }
    }
    if (const json * v = field(b, "stop")) {
        if (v->is_string()) job.stop = {v->get<std::string>()};
        else if (v->is_array()) {
            for (auto & s : *v) {
                if (!s.is_string()) throw bad_request("'stop' must be a string or an array of strings");
                job.stop.push_back(s.get<std::string>());
            }
        } else {
            throw bad_request("'stop' must be a string or an array of strings");
        }
    }
    if (const json * v = field(b, "n")) {
        if (!is_int(*v) || int_of(*v) != 1) throw bad_request("only n = 1 is supported");
    }
}

std::string message_text(const json & c) {
    if (c.is_string()) return c.get<std::string>();
    if (c.is_array()) {  // content parts: only text
        std::string t;
        for (auto & p : c) {
            if (!p.is_object() || !p.contains("type") || !p["type"].is_string() || p["type"].get<std::string>() != "text" ||
                !p.contains("text") || !p["text"].is_string())
                throw bad_request("message content parts: only {\"type\": \"text\", \"text\": ...} is supported");
            t += p["text"].get<std::string>();
        }
        return t;
    }
    throw bad_request("message 'content' must be a string or an array of text parts");
}

// Thinking per request: "thinking" adaptive|fast|slow, or the spellings clients send llama-server:
// chat_template_kwargs.enable_thinking false (fast) / true (slow), reasoning_effort "none" (fast).
// Default: adaptive with a classifier, else slow.
ThinkPolicyKind parse_thinking(const json & b, bool classifier) {
    std::optional<ThinkPolicyKind> k;
    if (const json * v = field(b, "chat_template_kwargs")) {
        if (!v->is_object()) throw bad_request("'chat_template_kwargs' must be an object");
        if (const json * e = field(*v, "enable_thinking")) {
            if (!e->is_boolean()) throw bad_request("'chat_template_kwargs.enable_thinking' must be a boolean");
            k = e->get<bool>() ? ThinkPolicyKind::AlwaysSlow : ThinkPolicyKind::AlwaysFast;
        }
    }
    if (const json * v = field(b, "reasoning_effort")) {
        if (!v->is_string()) throw bad_request("'reasoning_effort' must be a string");
        if (v->get<std::string>() == "none") k = ThinkPolicyKind::AlwaysFast;
    }
    if (const json * v = field(b, "thinking")) {
        const std::string t = v->is_string() ? v->get<std::string>() : "";
        if (t == "adaptive") {
            if (!classifier) throw bad_request("'thinking': 'adaptive' needs a server started with --classifier");
            k = ThinkPolicyKind::Classifier;
        } else if (t == "fast") {
            k = ThinkPolicyKind::AlwaysFast;
        } else if (t == "slow") {
            k = ThinkPolicyKind::AlwaysSlow;
        } else {
            throw bad_request("'thinking' must be \"adaptive\", \"fast\" or \"slow\"");
        }
    }
    if (k) return *k;
    return classifier ? ThinkPolicyKind::Classifier : ThinkPolicyKind::AlwaysSlow;
}

}  // namespace

json parse_body(const std::string & body) {
    json b = json::parse(body, nullptr, false);
    if (b.is_discarded()) {
        try {  // again, for the parser's message (where and what)
            (void) json::parse(body);
        } catch (const std::exception & e) {
            throw bad_request(std::string("invalid JSON: ") + e.what());
        }
        throw bad_request("invalid JSON");
    }
    if (!b.is_object()) throw bad_request("the request body must be a JSON object");
    return b;
}

bool parse_stream(const json & b) {
    bool s = false;
    typed(b, "stream", is_bool, [&](const json & v) { s = v.get<bool>(); }, "a boolean");
    return s;
}

void check_model_name(const json & b, const RequestRules & r) {
    if (const json * v = field(b, "model")) {
        if (!v->is_string()) throw bad_request("'model' must be a string");
        const std::string m = v->get<std::string>();
        if (m != r.alias && m != r.model_path && m != std::filesystem::path(r.model_path).filename().string())
            throw ApiError(404, "not_found_error", "model '" + m + "' not found (this server serves '" + r.alias + "')");
    }
}

std::vector<ChatMessage> parse_chat(const json & b, const RequestRules & r, Job & job) {
    check_model_name(b, r);
    job.kind = Job::Chat;
    const json * msgs = field(b, "messages");
    if (!msgs || !msgs->is_array() || msgs->empty()) throw bad_request("'messages' must be a non-empty array");
    std::vector<ChatMessage> ms;
    for (auto & m : *msgs) {
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
            throw bad_request("each message must be an object with a string 'role'");
        ChatMessage cm;
        cm.role = m["role"].get<std::string>();
        if (cm.role == "developer") cm.role = "system";
        if (cm.role != "system" && cm.role != "user" && cm.role != "assistant")
            throw bad_request("message role '" + cm.role + "' is not supported (system, user, assistant)");
        cm.content = m.contains("content") && !m["content"].is_null() ? message_text(m["content"]) : "";
        if (!cli::valid_utf8(cm.content)) throw bad_request("message content is not valid UTF-8");
        ms.push_back(cm);
    }
    if (ms.back().role != "user") throw bad_request("the last message must be the user's");
    if (ms.back().content.find_first_not_of(" \t\r\n") == std::string::npos) throw bad_request("the last user message is empty");
    parse_sampling(b, job, r.sampling);
    job.policy = parse_thinking(b, r.classifier);
    typed(b, "reasoning_control", is_bool, [&](const json & v) { job.reasoning_control = v.get<bool>(); }, "a boolean");
    job.reasoning_budget = r.reasoning_budget;
    job.budget_message = r.budget_message;
    if (const json * v = field(b, "reasoning_budget_tokens")) {
        if (!is_int(*v) || int_of(*v) < -1 || int_of(*v) > (1 << 30))
            throw bad_request("'reasoning_budget_tokens' must be an integer >= -1");
        if (int_of(*v) >= 0) job.reasoning_budget = (int) int_of(*v);
    }
    typed(b, "reasoning_budget_message", is_str, [&](const json & v) { job.budget_message = v.get<std::string>(); }, "a string");
    if (!cli::valid_utf8(job.budget_message)) throw bad_request("'reasoning_budget_message' is not valid UTF-8");
    job.input.question = ms.back().content;
    return ms;
}

std::string parse_completion(const json & b, const RequestRules & r, Job & job) {
    check_model_name(b, r);
    job.kind = Job::Completion;
    const json * p = field(b, "prompt");
    std::string text;
    if (p && p->is_string()) text = p->get<std::string>();
    else if (p && p->is_array() && p->size() == 1 && (*p)[0].is_string()) text = (*p)[0].get<std::string>();
    else throw bad_request("'prompt' must be a string");
    if (text.empty()) throw bad_request("'prompt' is empty");
    if (!cli::valid_utf8(text)) throw bad_request("'prompt' is not valid UTF-8");
    parse_sampling(b, job, r.sampling);
    return text;
}

std::string parse_embeddings(const json & b, const RequestRules & r, Job & job) {
    check_model_name(b, r);
    job.kind = Job::Embed;
    const json * in = field(b, "input");
    if (in && in->is_string()) job.texts = {in->get<std::string>()};
    else if (in && in->is_array() && !in->empty()) {
        for (auto & t : *in) {
            if (!t.is_string()) throw bad_request("'input' must be a string or an array of strings");
            job.texts.push_back(t.get<std::string>());
        }
    } else {
        throw bad_request("'input' must be a string or a non-empty array of strings");
    }
    for (auto & t : job.texts) {
        if (t.empty()) throw bad_request("'input' holds an empty text");
        if (!cli::valid_utf8(t)) throw bad_request("'input' is not valid UTF-8");
    }
    std::string fmt = "float";
    typed(b, "encoding_format", is_str, [&](const json & v) { fmt = v.get<std::string>(); }, "a string");
    if (fmt != "float" && fmt != "base64") throw bad_request("'encoding_format' must be \"float\" or \"base64\"");
    for (auto & k : PoolConfig::knobs()) {  // the pooling knobs as extra fields (CLI spellings), e.g. "source": "hidden"
        if (const json * v = field(b, k.name)) {
            if (!v->is_string()) throw bad_request(std::string("'") + k.name + "' must be a string");
            job.pool_knobs[k.name] = v->get<std::string>();
        }
    }
    return fmt;
}

std::string parse_control(const json & b) {
    const json * id = field(b, "id");
    if (!id || !id->is_string() || id->get<std::string>().empty()) throw bad_request("missing completion id");
    const json * act = field(b, "action");
    if (!act || !act->is_string() || act->get<std::string>() != "reasoning_end") throw bad_request("unknown control action");
    return id->get<std::string>();
}

}  // namespace kvlens::serve
