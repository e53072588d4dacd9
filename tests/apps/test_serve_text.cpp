// kvlens serve's text pipeline (tools/kvlens/serve_text.h): stop strings and the reasoning/content split, streamed
// piece by piece (any cut) equal to the whole.
#include <gtest/gtest.h>

#include "../../tools/kvlens/serve_text.h"

using namespace kvlens::serve;

namespace {

struct Split {
    std::string reasoning, content;
};

// Feeds the text in pieces of `step` bytes (0: whole).
Split run(const std::string & text, size_t step) {
    ReasoningSplitter sp;
    Split s;
    if (step == 0) step = text.size() ? text.size() : 1;
    for (size_t i = 0; i < text.size(); i += step) sp.push(text.substr(i, step), &s.reasoning, &s.content);
    sp.finish(&s.reasoning, &s.content);
    return s;
}

}  // namespace

TEST(ServeText, SplitsReasoningFromContentAtAnyCut) {
    const std::string t = "<think>\nlet me add 2 and 2\n</think>\n\nThe answer is 4.\n";
    for (size_t step : {0, 1, 2, 3, 5, 7, 100}) {
        Split s = run(t, step);
        EXPECT_EQ(s.reasoning, "let me add 2 and 2") << step;
        EXPECT_EQ(s.content, "The answer is 4.") << step;
    }
}

TEST(ServeText, FastPrefixGivesNoReasoning) {
    Split s = run("<think>\n\n</think>\n\n42", 1);
    EXPECT_EQ(s.reasoning, "");
    EXPECT_EQ(s.content, "42");
}

TEST(ServeText, NoThinkTagIsAllContent) {
    Split s = run("  <thin is not a tag", 1);
    EXPECT_EQ(s.reasoning, "");
    EXPECT_EQ(s.content, "<thin is not a tag");
    EXPECT_EQ(run("hello", 0).content, "hello");
}

TEST(ServeText, UnclosedThinkIsReasoning) {
    Split s = run("<think>\nstill thinking </thi", 2);
    EXPECT_EQ(s.reasoning, "still thinking </thi");
    EXPECT_EQ(s.content, "");
}

TEST(ServeText, InnerWhitespaceKeptTrailingDropped) {
    Split s = run("<think>a\n\nb  \n</think>x \n y\n\n", 1);
    EXPECT_EQ(s.reasoning, "a\n\nb");
    EXPECT_EQ(s.content, "x \n y");
}

TEST(ServeText, ControlTextSwitchesParts) {
    ReasoningSplitter sp;
    std::string r, c;
    sp.push("<think>\n", &r, &c);
    sp.push("hmm ", &r, &c);
    sp.control("</think>\n\n", &r, &c);  // reasoning_end or a slow -> fast switch
    EXPECT_FALSE(sp.in_reasoning());
    sp.push("7", &r, &c);
    sp.control("<think>\n", &r, &c);  // fast -> slow
    EXPECT_TRUE(sp.in_reasoning());
    sp.push("more", &r, &c);
    sp.finish(&r, &c);
    EXPECT_EQ(r, "hmmmore");
    EXPECT_EQ(c, "7");
}

TEST(ServeText, StopStringCutsAndHoldsBackPartialMatches) {
    StopMatcher m({"END", ""});
    std::string out;
    out += m.push("abc E");
    EXPECT_EQ(out, "abc ");  // "E" might begin "END"
    out += m.push("N");
    EXPECT_EQ(out, "abc ");
    out += m.push("Dxyz");
    EXPECT_TRUE(m.hit());
    EXPECT_EQ(out, "abc ");
    EXPECT_EQ(m.push("more"), "");

    StopMatcher n({"END"});
    std::string o2 = n.push("a E");
    EXPECT_EQ(o2, "a ");
    o2 += n.push("x");
    EXPECT_FALSE(n.hit());
    EXPECT_EQ(o2 + n.flush(), "a Ex");
    StopMatcher none;
    EXPECT_EQ(none.push("abc"), "abc");

    // fuzz_serve_text's find: stops "</s>" and "/", text "e</s> i" in the pieces "e</" + "s> i". "/" is whole
    // after the first piece, but "</s>" may still start one byte earlier: the cut waits, and lands where the
    // whole text would cut it ("e").
    StopMatcher p({"</s>", "/"});
    std::string o3 = p.push("e</");
    EXPECT_FALSE(p.hit());
    EXPECT_EQ(o3, "e");
    o3 += p.push("s> i");
    EXPECT_TRUE(p.hit());
    EXPECT_EQ(o3, "e");
    StopMatcher q({"</s>", "/"});  // the longer one never completes: the shorter one cuts, at the end at the latest
    std::string o4 = q.push("e</");
    o4 += q.flush();
    EXPECT_TRUE(q.hit());
    EXPECT_EQ(o4, "e<");
}
