//! The answer to tool results: the first sentence of each cited passage they hold,
//! with its citation.
//!
//! A tool result is plain text in paragraphs (separated by blank lines). A
//! paragraph whose first line starts with `[^<id>]` opens a cited passage: the rest
//! of that line is its title, the following lines and paragraphs (up to the next
//! passage) its text. Anything before the first passage is ignored.

/// Passages the answer quotes, at most.
pub const MAX_CITED_PASSAGES: usize = 3;

/// The answer's first sentence when a cited passage was found.
pub const CITED_ANSWER_INTRO: &str = "Here is what I found.";

/// The whole answer when no cited passage was found.
pub const NOTHING_FOUND_ANSWER: &str = "I found nothing relevant to your question.";

/// Words of a passage quoted at most: a passage without a full stop is cut here.
const MAX_QUOTED_WORDS: usize = 40;

/// The mock's answer to `question` when the conversation ends with these tool
/// results: [`CITED_ANSWER_INTRO`], then for each of the [`MAX_CITED_PASSAGES`]
/// passages (distinct ids) that share the most words with the question its first
/// sentence followed by ` [^<id>]`, all separated by single spaces;
/// [`NOTHING_FOUND_ANSWER`] when none is found.
///
/// A passage's relevance is how many distinct words of the question (of three
/// letters or more, in any case) its title and text contain; passages as relevant
/// as each other keep the results' order. Crude, but it makes the demo quote the
/// passage that answers rather than whichever source was searched first.
///
/// The first sentence runs to the first `.`, `!` or `?` followed by a space or the
/// end, whitespace collapsed, at most 40 words (then `…` ends it); a passage with
/// no text quotes its title instead, and one with neither is skipped.
pub fn expected_cited_answer<S: AsRef<str>>(question: &str, tool_results: &[S]) -> String {
    let question_words = words(question);
    let mut found: Vec<Passage<'_>> = tool_results
        .iter()
        .flat_map(|r| passages(r.as_ref()))
        .collect();
    // A stable sort: equally relevant passages keep their order.
    found.sort_by_key(|passage| std::cmp::Reverse(passage.relevance(&question_words)));
    let mut seen: Vec<&str> = Vec::new();
    let mut answer = String::from(CITED_ANSWER_INTRO);
    for passage in found {
        if seen.len() == MAX_CITED_PASSAGES {
            break;
        }
        if seen.contains(&passage.id) {
            continue;
        }
        let quoted = match first_sentence(&passage.text) {
            sentence if !sentence.is_empty() => sentence,
            _ => first_sentence(passage.title),
        };
        if quoted.is_empty() {
            continue;
        }
        seen.push(passage.id);
        answer.push(' ');
        answer.push_str(&quoted);
        answer.push_str(&format!(" [^{}]", passage.id));
    }
    if seen.is_empty() {
        NOTHING_FOUND_ANSWER.to_owned()
    } else {
        answer
    }
}

/// A cited passage of a tool result.
struct Passage<'a> {
    id: &'a str,
    title: &'a str,
    text: String,
}

impl Passage<'_> {
    /// How many of `question_words` the passage's title and text contain.
    fn relevance(&self, question_words: &[String]) -> usize {
        let mine = words(&format!("{} {}", self.title, self.text));
        question_words.iter().filter(|w| mine.contains(w)).count()
    }
}

/// The distinct words of `text` of three letters or more, lowercased.
fn words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    words
}

/// The cited passages of one tool result, in order.
fn passages(result: &str) -> Vec<Passage<'_>> {
    let mut found: Vec<Passage> = Vec::new();
    let mut starts_paragraph = true;
    for line in result.lines() {
        if line.trim().is_empty() {
            starts_paragraph = true;
            continue;
        }
        if starts_paragraph && let Some((id, title)) = citation_key(line) {
            found.push(Passage {
                id,
                title,
                text: String::new(),
            });
        } else if let Some(passage) = found.last_mut() {
            passage.text.push('\n');
            passage.text.push_str(line);
        }
        starts_paragraph = false;
    }
    found
}

/// `[^<id>] <title>` split into the id and the title; `None` for any other line.
fn citation_key(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix("[^")?;
    let (id, title) = rest.split_once(']')?;
    (!id.trim().is_empty()).then_some((id.trim(), title.trim()))
}

/// The first sentence of `text`, whitespace collapsed (see [`expected_cited_answer`]).
fn first_sentence(text: &str) -> String {
    let mut sentence = String::new();
    for (count, word) in text.split_whitespace().enumerate() {
        if count == MAX_QUOTED_WORDS {
            sentence.push('…');
            break;
        }
        if count > 0 {
            sentence.push(' ');
        }
        sentence.push_str(word);
        if word.ends_with(['.', '!', '?']) {
            break;
        }
    }
    sentence
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = "Results for \"tides\" in Ocean notes:\n\n\
        [^ocean/3] Tides › Causes\nTides are caused by the Moon. The Sun helps too.\n\n\
        [^ocean/9] Waves\nWind makes   waves\nover long distances! More text.\n\n\
        A second paragraph of the waves passage.";

    #[test]
    fn quotes_the_first_sentence_of_each_passage_with_its_citation() {
        assert_eq!(
            expected_cited_answer("", &[RESULT]),
            "Here is what I found. Tides are caused by the Moon. [^ocean/3] \
             Wind makes waves over long distances! [^ocean/9]"
        );
    }

    #[test]
    fn at_most_three_distinct_passages_across_results() {
        let other = "[^a] A\nFirst a.\n\n[^ocean/3] again\nDuplicate.\n\n[^b] B\nFirst b.";
        let answer = expected_cited_answer("", &[RESULT, other]);
        assert!(answer.ends_with("[^ocean/9] First a. [^a]"), "{answer}");
        assert_eq!(answer.matches("[^").count(), 3);
    }

    #[test]
    fn the_passages_closest_to_the_question_come_first() {
        let answer = expected_cited_answer("What makes the waves?", &[RESULT]);
        assert_eq!(
            answer,
            "Here is what I found. Wind makes waves over long distances! [^ocean/9] \
             Tides are caused by the Moon. [^ocean/3]"
        );
    }

    #[test]
    fn nothing_cited_says_so() {
        let none: [&str; 0] = [];
        assert_eq!(expected_cited_answer("", &none), NOTHING_FOUND_ANSWER);
        let errors = ["error: unknown tool \"nope\"", "[^] no id\ntext", "[^x]"];
        assert_eq!(expected_cited_answer("", &errors), NOTHING_FOUND_ANSWER);
    }

    #[test]
    fn tolerant_of_layout() {
        // Text in its own paragraph, CRLF, blank lines with spaces, key line
        // indented, no full stop; a key inside a paragraph is text.
        let result =
            "  [^k1] Title one\r\n \r\nsome text\n[^k9] without end\r\n\r\n[^k2] Only a title";
        assert_eq!(
            expected_cited_answer("", &[result]),
            "Here is what I found. some text [^k9] without end [^k1] Only a title [^k2]"
        );
        let long = format!("[^long] L\n{}", "word ".repeat(50));
        let answer = expected_cited_answer("", &[long]);
        assert!(answer.ends_with(" word… [^long]"), "{answer}");
        assert_eq!(answer.matches("word").count(), MAX_QUOTED_WORDS);
    }
}
