// PromptFormat: the model's chat template rendered by llama.cpp's Jinja engine (common/chat.h), the user turn
// and the fast/slow prefixes derived from its enable_thinking=false/true renderings.
#include "kvlens/prompt.h"

#include <cstdio>

#include "chat.h"
#include "log.h"
#include "kvlens/error.h"

namespace kvlens {

struct PromptFormat::Impl {
    common_chat_templates_ptr tmpls;
    bool jinja = true;
    std::string none_tail;  // what the default (enable_thinking=true) rendering appends after the user turn
};

namespace {

bool starts_with(const std::string & s, const std::string & t) { return s.compare(0, t.size(), t) == 0; }
bool ends_with(const std::string & s, const std::string & t) {
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}
size_t common_prefix(const std::string & a, const std::string & b) {
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    return i;
}

std::string render_with(const PromptFormat::Impl & im, const std::vector<ChatMessage> & msgs, bool thinking, bool add_gen) {
    common_chat_templates_inputs in;
    for (const auto & m : msgs) {
        common_chat_msg msg;
        msg.role = m.role;
        msg.content = m.content;
        in.messages.push_back(msg);
    }
    in.add_generation_prompt = add_gen;
    in.use_jinja = im.jinja;
    in.enable_thinking = thinking;
    try {
        return common_chat_templates_apply(im.tmpls.get(), in).prompt;
    } catch (const std::exception & e) {
        throw Error(std::string("the chat template cannot render a user turn: ") + e.what());
    }
}

std::string render_with(const PromptFormat::Impl & im, const std::string & q, bool thinking, bool add_gen) {
    return render_with(im, std::vector<ChatMessage>{{"user", q}}, thinking, add_gen);
}

bool is_builtin_name(const std::string & t) {
    if (t.find("{%") != std::string::npos || t.find("{{") != std::string::npos) return false;
    std::vector<const char *> names(64);
    int n = llama_chat_builtin_templates(names.data(), names.size());
    if (n > (int) names.size()) {
        names.resize(n);
        n = llama_chat_builtin_templates(names.data(), names.size());
    }
    for (int i = 0; i < n; ++i)
        if (t == names[i]) return true;
    return false;
}

void hand_written(PromptFormat & f, const std::string & name) {
    f.name = name;
    // kvlens's formats from before templates were rendered (models without a template keep them): the authors'
    // qwen3 strings, and R1's closed empty think
    if (name == "r1") {
        f.fast_prefix = "<think>\n\n</think>\n\n";
        f.none_prefix = f.slow_prefix = "<think>\n";
    } else {
        f.name = "qwen3";
        f.fast_prefix = "<think>\n</think>\n\n";
        f.slow_prefix = "<think>\n";
        f.none_prefix = "";
    }
}

}  // namespace

const char * to_string(PromptMode m) { return m == PromptMode::Fast ? "fast" : m == PromptMode::Slow ? "slow" : "none"; }

PromptMode parse_prompt_mode(const std::string & s) {
    if (s == "none" || s == "auto") return PromptMode::None;
    if (s == "fast" || s == "off") return PromptMode::Fast;
    if (s == "slow" || s == "on") return PromptMode::Slow;
    throw Error("unknown mode '" + s + "' (none, fast, slow; or llama.cpp's auto, off, on)");
}

std::string PromptFormat::render(const Model & m, const std::string & q) const {
    if (!impl) {
        if (name == "r1") return "<｜User｜>" + q + "<｜Assistant｜>";
        return "<|im_start|>user\n" + q + "<|im_end|>\n<|im_start|>assistant\n";
    }
    std::string t = render_with(*impl, q, true, true);
    if (!ends_with(t, impl->none_tail))
        throw Error("the chat template renders this question without its usual generation prompt");
    t.resize(t.size() - impl->none_tail.size());
    return t;
}

std::string PromptFormat::render_messages(const Model & m, const std::vector<ChatMessage> & msgs) const {
    if (msgs.empty()) throw Error("no messages");
    for (const auto & x : msgs)
        if (x.role != "system" && x.role != "user" && x.role != "assistant")
            throw Error("unknown message role '" + x.role + "' (system, user, assistant)");
    if (msgs.back().role != "user") throw Error("the last message must be the user's");
    if (msgs.size() == 1) return render(m, msgs[0].content);
    if (!impl) {  // hand-written formats: ChatML or R1's tags, turn by turn
        std::string t;
        for (const auto & x : msgs) {
            if (name == "r1") {
                t += x.role == "system" ? x.content : x.role == "user" ? "<｜User｜>" + x.content
                                                                       : "<｜Assistant｜>" + x.content + "<｜end▁of▁sentence｜>";
            } else {
                t += "<|im_start|>" + x.role + "\n" + x.content + "<|im_end|>\n";
            }
        }
        return t + (name == "r1" ? "<｜Assistant｜>" : "<|im_start|>assistant\n");
    }
    std::string t = render_with(*impl, msgs, true, true);
    if (!ends_with(t, impl->none_tail))
        throw Error("the chat template renders this conversation without its usual generation prompt");
    t.resize(t.size() - impl->none_tail.size());
    return t;
}

const std::string & PromptFormat::prefix(PromptMode mode) const {
    return mode == PromptMode::Fast ? fast_prefix : mode == PromptMode::Slow ? slow_prefix : none_prefix;
}

std::vector<Token> PromptFormat::tokenize(const Model & m, const std::string & text) {
    const bool bos = m.add_bos() && !(m.bos() >= 0 && starts_with(text, m.piece(m.bos())));
    return m.tokenize(text, bos, true);
}

std::vector<Token> PromptFormat::tokens(const Model & m, const std::string & q, PromptMode mode) const {
    const std::string user = render(m, q);
    auto toks = tokenize(m, user);
    const auto pre = m.tokenize(prefix(mode), false, true);
    toks.insert(toks.end(), pre.begin(), pre.end());
    if (toks != tokenize(m, user + prefix(mode)))
        throw Error("the user turn and the " + std::string(to_string(mode)) +
                    " prefix do not tokenize as their concatenation does (pass --fast-prefix/--slow-prefix)");
    return toks;
}

std::string PromptFormat::describe() const {
    return name + " fast='" + escape(fast_prefix) + "' slow='" + escape(slow_prefix) + "'";
}

PromptFormat prompt_format(const Model & m, const std::string & format) {
    PromptOptions o;
    o.format = format;
    return prompt_format(m, o);
}

PromptFormat prompt_format(const Model & m, const PromptOptions & o) {
    PromptFormat f;
    const std::string & fmt = o.format;
    if (fmt != "auto" && fmt != "paper" && fmt != "qwen3" && fmt != "chatml" && fmt != "r1")
        throw Error("unknown prompt format '" + fmt + "' (auto, paper, qwen3, chatml, r1)");
    const bool has_tmpl = !o.chat_template.empty() || m.has_chat_template();
    if (fmt == "qwen3" || fmt == "chatml" || fmt == "r1" || !has_tmpl) {
        hand_written(f, fmt == "r1" ? "r1" : "qwen3");
    } else {
        auto im = std::make_shared<PromptFormat::Impl>();
        im->jinja = o.jinja && !is_builtin_name(o.chat_template);
        try {
            im->tmpls = common_chat_templates_init(m.raw(), o.chat_template);
        } catch (const std::exception & e) {
            throw Error(std::string("cannot parse the chat template: ") + e.what());
        }
        if (!im->tmpls) throw Error("cannot parse the chat template");
        // Render a probe question three ways: without a generation prompt, fast and slow.
        const std::string q = "kvlens probe question";
        const std::string conv = render_with(*im, q, true, false);
        const std::string tf = render_with(*im, q, false, true), ts = render_with(*im, q, true, true);
        size_t base = starts_with(tf, conv) && starts_with(ts, conv) ? conv.size() : common_prefix(tf, ts);
        std::string gf = tf.substr(base), gs = ts.substr(base);
        size_t open = common_prefix(gf, gs);
        std::string opener = gf.substr(0, open);
        // thinking tags: common's detection, else Qwen-style
        common_chat_templates_inputs in;
        common_chat_msg msg;
        msg.role = "user";
        msg.content = q;
        in.messages = {msg};
        in.use_jinja = im->jinja;
        try {
            auto p = common_chat_templates_apply(im->tmpls.get(), in);
            if (!p.thinking_start_tag.empty()) f.think_open = p.thinking_start_tag;
            if (!p.thinking_end_tags.empty() && !p.thinking_end_tags[0].empty()) f.think_close = p.thinking_end_tags[0];
        } catch (const std::exception &) {
        }
        if (size_t at = opener.find(f.think_open); at != std::string::npos) opener.resize(at);
        f.name = "template";
        f.fast_prefix = gf.substr(opener.size());
        im->none_tail = gs.substr(opener.size());
        f.none_prefix = im->none_tail;
        f.slow_prefix = im->none_tail;
        f.thinking = f.fast_prefix != f.slow_prefix;
        if (f.thinking && f.slow_prefix.find(f.think_open) == std::string::npos) {
            // Qwen3's template leaves "<think>\n" to the model; slow mode means thinking, so kvlens writes it
            f.slow_prefix += f.think_open + "\n";
            f.slow_opener_added = true;
        }
        f.impl = im;
        if (fmt == "paper") {
            f.name = "paper";
            f.fast_prefix = "<think>\n</think>\n\n";
            f.slow_prefix = "<think>\n";
            f.thinking = true;
        }
    }
    if (o.fast_prefix) f.fast_prefix = *o.fast_prefix;
    if (o.slow_prefix) f.slow_prefix = *o.slow_prefix;
    if (o.fast_prefix || o.slow_prefix) {
        f.name += "+custom";
        f.thinking = f.fast_prefix != f.slow_prefix;
    }
    return f;
}

std::string unescape(const std::string & s) {
    std::string r;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            r += s[i];
            continue;
        }
        char c = s[++i];
        r += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
    }
    return r;
}

std::string escape(const std::string & s) {
    std::string r;
    for (char c : s) {
        if (c == '\n') r += "\\n";
        else if (c == '\t') r += "\\t";
        else if (c == '\r') r += "\\r";
        else if (c == '\\') r += "\\\\";
        else r += c;
    }
    return r;
}

void print_verbose_prompt(const Model & m, const std::vector<Token> & toks, const char * what) {
    std::fprintf(stderr, "number of tokens in %s = %zu\n", what, toks.size());
    for (Token t : toks) std::fprintf(stderr, "%6d -> '%s'\n", t, m.piece(t, true).c_str());
}

}  // namespace kvlens
