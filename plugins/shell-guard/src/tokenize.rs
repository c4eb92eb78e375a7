//! A forgiving shell-like tokeniser for one line of text, which may be a real command (a tool
//! call's argument) or prose that mentions one (a thinking block): words with quotes and
//! escapes resolved, redirections, and simple commands grouped into pipelines.
//!
//! It is not a shell parser. It is built to find commands in text without tripping over
//! prose: an apostrophe inside a word (`don't`) does not open a quote, an unterminated quote is
//! skipped, and a word ending in sentence punctuation (`/.` `dir,`) ends the
//! command it belongs to, as `;` would.

/// One word of a simple command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word with quotes removed and escapes resolved (sentence punctuation stripped).
    pub text: String,
    /// Byte offset of the word's first character in the tokenised text.
    pub start: usize,
    /// Byte offset just past the word's last character in the tokenised text.
    pub end: usize,
    /// Whether any part of the word was quoted (a quoted word holding spaces may be a command
    /// of its own, as in `bash -c "…"`).
    pub quoted: bool,
}

/// An output redirection (`>`, `>>`, `2>`, `&>`, `>|`) and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The target, e.g. `/dev/sda` (empty when the operator had none).
    pub target: String,
    /// Byte offset of the operator.
    pub start: usize,
    /// Byte offset just past the target.
    pub end: usize,
}

/// A simple command: its words in order and its output redirections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    /// The words, command name first (in prose: every word of the clause).
    pub words: Vec<Word>,
    /// Output redirections.
    pub redirects: Vec<Redirect>,
}

impl Command {
    /// Byte offset just past the command's last word or redirection.
    pub fn end(&self) -> usize {
        let words = self.words.last().map_or(0, |w| w.end);
        let redirects = self.redirects.iter().map(|r| r.end).max().unwrap_or(0);
        words.max(redirects)
    }

    fn is_empty(&self) -> bool {
        self.words.is_empty() && self.redirects.is_empty()
    }
}

/// Simple commands joined by `|`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    /// The commands, in order.
    pub commands: Vec<Command>,
}

/// What a quote character opens, and the character that closes it.
fn closing_quote(c: char) -> Option<char> {
    match c {
        '\'' => Some('\''),
        '"' => Some('"'),
        '\u{201c}' => Some('\u{201d}'),
        '\u{2018}' => Some('\u{2019}'),
        _ => None,
    }
}

/// Punctuation that ends a sentence (and so a command mentioned in prose) when it ends a word.
fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | ',' | ':' | '!' | '?')
}

/// The lexer's state; `pos` is a byte offset into `text`, always on a character boundary.
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    pipelines: Vec<Pipeline>,
    pipeline: Pipeline,
    command: Command,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            text,
            pos: 0,
            pipelines: Vec::new(),
            pipeline: Pipeline::default(),
            command: Command::default(),
        }
    }

    /// The character `ahead` characters after the current one.
    fn peek(&self, ahead: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(ahead)
    }

    /// The character before the current position.
    fn prev(&self) -> Option<char> {
        self.text[..self.pos].chars().next_back()
    }

    /// Moves past the current character.
    fn bump(&mut self) {
        if let Some(c) = self.peek(0) {
            self.pos += c.len_utf8();
        }
    }

    /// Ends the current simple command (at `|`).
    fn end_command(&mut self) {
        let command = std::mem::take(&mut self.command);
        if !command.is_empty() {
            self.pipeline.commands.push(command);
        }
    }

    /// Ends the current pipeline (at `;`, `&&`, `||`, `&`, parentheses, sentence ends).
    fn end_pipeline(&mut self) {
        self.end_command();
        let pipeline = std::mem::take(&mut self.pipeline);
        if !pipeline.commands.is_empty() {
            self.pipelines.push(pipeline);
        }
    }

    fn run(mut self) -> Vec<Pipeline> {
        while let Some(c) = self.peek(0) {
            match c {
                c if c.is_whitespace() => self.bump(),
                '|' => {
                    // `||` separates pipelines; `|` and `|&` join commands.
                    if self.peek(1) == Some('|') {
                        self.pos += 2;
                        self.end_pipeline();
                    } else {
                        self.pos += if self.peek(1) == Some('&') { 2 } else { 1 };
                        self.end_command();
                    }
                }
                '&' if self.peek(1) == Some('>') => self.redirect(),
                ';' | '&' | '(' | ')' | '`' => {
                    self.bump();
                    self.end_pipeline();
                }
                '$' | '<' if self.peek(1) == Some('(') => {
                    // Command and process substitution: the inner command stands on its own.
                    self.pos += 2;
                    self.end_pipeline();
                }
                '>' => self.redirect(),
                '<' => self.input_redirect(),
                '#' if self.at_comment_start() => break,
                c if c.is_ascii_digit() && self.digits_then_redirect() => self.redirect(),
                _ => self.word(),
            }
        }
        self.end_pipeline();
        self.pipelines
    }

    /// `#` starts a comment at the start of the text or after whitespace when followed by
    /// whitespace, `!` or the end (so `#1` in prose or `a#b` stay words).
    fn at_comment_start(&self) -> bool {
        let after_space = self.prev().is_none_or(char::is_whitespace);
        let next = self.peek(1);
        after_space && next.is_none_or(|c| c.is_whitespace() || c == '!')
    }

    fn digits_then_redirect(&self) -> bool {
        let rest = &self.text[self.pos..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        rest[digits..].starts_with('>')
    }

    /// Moves past characters matching `keep`.
    fn skip_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek(0).is_some_and(&keep) {
            self.bump();
        }
    }

    /// An output redirection: `[N]>`, `[N]>>`, `>|`, `&>`, `&>>`, then `&N` or a target word.
    fn redirect(&mut self) {
        let start = self.pos;
        self.skip_while(|c| c.is_ascii_digit() || c == '&');
        self.skip_while(|c| c == '>' || c == '|');
        if self.peek(0) == Some('&') {
            // `2>&1`: duplicates a descriptor, no file.
            self.bump();
            self.skip_while(|c| c.is_ascii_digit() || c == '-');
            return;
        }
        self.skip_while(|c| c.is_whitespace() && c != '\n');
        let target = match self.peek(0) {
            Some(c) if !is_operator_start(c) => self.read_word(),
            _ => None,
        };
        let (target, end) = match target {
            Some((word, _)) => (word.text, word.end),
            None => (String::new(), self.pos),
        };
        self.command.redirects.push(Redirect { target, start, end });
    }

    /// An input redirection or here-document marker: its operand is not a command word.
    fn input_redirect(&mut self) {
        self.skip_while(|c| c == '<');
        self.skip_while(|c| c.is_whitespace() && c != '\n');
        if self.peek(0).is_some_and(|c| !is_operator_start(c)) {
            self.read_word();
        }
    }

    fn word(&mut self) {
        if let Some((word, sentence_end)) = self.read_word() {
            self.command.words.push(word);
            if sentence_end {
                self.end_pipeline();
            }
        }
    }

    /// Reads one word from the current position. Returns it and whether it ended with
    /// sentence punctuation (stripped from its text).
    fn read_word(&mut self) -> Option<(Word, bool)> {
        let first = self.pos;
        // Fast path: copy the run of plain characters in one go (most words are only that).
        let rest = &self.text[first..];
        let plain = rest
            .find(|c: char| {
                c.is_whitespace()
                    || is_operator_start(c)
                    || closing_quote(c).is_some()
                    || matches!(c, '\\' | '=' | '\u{201d}' | '\u{2019}')
            })
            .unwrap_or(rest.len());
        let mut text = rest[..plain].to_owned();
        self.pos += plain;
        let mut quoted = false;
        while let Some(c) = self.peek(0) {
            if c.is_whitespace() || is_operator_start(c) {
                // `$(` and `&>` inside a word end it like their operators do.
                break;
            }
            let quote_may_open = self.pos == first
                || text.ends_with('=')
                || self
                    .prev()
                    .is_some_and(|p| matches!(p, '\'' | '"' | '\u{201d}' | '\u{2019}'));
            if let Some(close) = closing_quote(c).filter(|_| quote_may_open) {
                match self.quoted(c, close) {
                    Some((content, after)) => {
                        text.push_str(&content);
                        quoted = true;
                        self.pos = after;
                    }
                    // An unterminated quote (partial JSON, a stray quote in prose) is skipped,
                    // so that the word after it is still seen: `"rm` reads as `rm`.
                    None => self.bump(),
                }
                continue;
            }
            if c == '\\'
                && let Some(next) = self.peek(1)
            {
                if next != '\n' {
                    text.push(next);
                }
                self.bump();
                self.bump();
                continue;
            }
            text.push(c);
            self.bump();
        }
        if self.pos == first {
            return None;
        }
        let mut end = self.pos;
        let mut sentence_end = false;
        if !quoted {
            let trimmed = text.trim_end_matches(is_sentence_end);
            // `.`, `..` and `...` are words of their own, not punctuation.
            if !trimmed.is_empty() && trimmed.len() < text.len() {
                // Punctuation is ASCII: as many bytes of the source as of the text.
                end -= text.len() - trimmed.len();
                text.truncate(trimmed.len());
                sentence_end = true;
            }
        }
        Some((
            Word {
                text,
                start: first,
                end,
                quoted,
            },
            sentence_end,
        ))
    }

    /// The quoted string opened by `open` at the current position and closed by `close` on the
    /// same line: its content (with `\"`, `\\`, `\$` and `` \` `` resolved inside double
    /// quotes) and the byte offset after the closing quote. `None` when it is not closed.
    fn quoted(&self, open: char, close: char) -> Option<(String, usize)> {
        let body_start = self.pos + open.len_utf8();
        let body = &self.text[body_start..];
        let mut escaped = false;
        let mut end = None;
        for (i, c) in body.char_indices() {
            if c == '\n' {
                return None;
            }
            if c == close && !escaped {
                end = Some(i);
                break;
            }
            escaped = close == '"' && c == '\\' && !escaped;
        }
        let end = end?;
        let inner = &body[..end];
        let after = body_start + end + close.len_utf8();
        if open != '"' {
            return Some((inner.to_owned(), after));
        }
        let mut out = String::with_capacity(inner.len());
        let mut escaped = false;
        for c in inner.chars() {
            if escaped {
                if !matches!(c, '"' | '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else {
                out.push(c);
            }
        }
        Some((out, after))
    }
}

/// Characters that end a word outside quotes.
fn is_operator_start(c: char) -> bool {
    matches!(c, '|' | '&' | ';' | '(' | ')' | '`' | '<' | '>')
}

/// Splits one line of text into pipelines of simple commands.
pub fn tokenize(text: &str) -> Vec<Pipeline> {
    Lexer::new(text).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(p: &Pipeline) -> Vec<Vec<&str>> {
        p.commands
            .iter()
            .map(|c| c.words.iter().map(|w| w.text.as_str()).collect())
            .collect()
    }

    fn all(text: &str) -> Vec<Vec<Vec<String>>> {
        tokenize(text)
            .iter()
            .map(|p| {
                words(p)
                    .into_iter()
                    .map(|c| c.into_iter().map(str::to_owned).collect())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn words_quotes_and_escapes() {
        assert_eq!(
            all(r#"sudo rm -rf "$HOME" 'a b' c\ d"#),
            [[["sudo", "rm", "-rf", "$HOME", "a b", "c d"]]]
        );
        assert_eq!(
            all(r#"bash -c "echo \"hi\" \n""#),
            [[["bash", "-c", "echo \"hi\" \\n"]]]
        );
        assert_eq!(all(r#"--message='x y'"#), [[["--message=x y"]]]);
        let p = tokenize(r#"sh -c 'rm -rf /'"#);
        let w = &p[0].commands[0].words[2];
        assert!(w.quoted);
        assert_eq!((w.start, w.end), (6, 16));
    }

    #[test]
    fn prose_apostrophes_are_literal_and_unterminated_quotes_skipped() {
        assert_eq!(
            all("I don't think we can't do it"),
            [[["I", "don't", "think", "we", "can't", "do", "it"]]]
        );
        assert_eq!(all("it's 'open"), [[["it's", "open"]]]);
        assert_eq!(
            all("{\"cmd\": \"rm -rf"),
            vec![vec![vec!["{\"cmd\""]], vec![vec!["rm", "-rf"]]]
        );
        assert_eq!(
            all("run \u{201c}rm -rf /\u{201d} now"),
            [[["run", "rm -rf /", "now"]]]
        );
    }

    #[test]
    fn operators_split_commands_and_pipelines() {
        assert_eq!(
            all("cd /tmp && rm -rf x; ls | wc -l || true & echo"),
            vec![
                vec![vec!["cd", "/tmp"]],
                vec![vec!["rm", "-rf", "x"]],
                vec![vec!["ls"], vec!["wc", "-l"]],
                vec![vec!["true"]],
                vec![vec!["echo"]],
            ]
        );
        assert_eq!(
            all("curl -fsSL https://x.sh |& sudo bash -s"),
            [[
                vec!["curl", "-fsSL", "https://x.sh"],
                vec!["sudo", "bash", "-s"]
            ]]
        );
        assert_eq!(
            all("bash <(curl -s x) && echo $(whoami)"),
            vec![
                vec![vec!["bash"]],
                vec![vec!["curl", "-s", "x"]],
                vec![vec!["echo"]],
                vec![vec!["whoami"]],
            ]
        );
        assert_eq!(all("(cd / ; rm -rf *)").len(), 2);
    }

    #[test]
    fn redirections() {
        let p = tokenize("cat /dev/zero > /dev/sda 2>/dev/null 2>&1 >>log &>/dev/nvme0n1");
        let c = &p[0].commands[0];
        assert_eq!(
            c.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(),
            ["cat", "/dev/zero"]
        );
        let targets: Vec<&str> = c.redirects.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["/dev/sda", "/dev/null", "log", "/dev/nvme0n1"]);
        assert_eq!(
            c.end(),
            "cat /dev/zero > /dev/sda 2>/dev/null 2>&1 >>log &>/dev/nvme0n1".len()
        );
        // Input redirections and here-documents take no command words.
        assert_eq!(all("psql < dump.sql"), [[["psql"]]]);
        assert_eq!(all("cat <<EOF"), [[["cat"]]]);
        // A digit that is not followed by `>` is a word.
        assert_eq!(all("init 0"), [[["init", "0"]]]);
    }

    #[test]
    fn sentence_punctuation_ends_a_command() {
        assert_eq!(
            all("I'll run rm -rf ./build, not /."),
            vec![
                vec![vec!["I'll", "run", "rm", "-rf", "./build"]],
                vec![vec!["not", "/"]],
            ]
        );
        // Dots alone are words, quoted text keeps its punctuation.
        assert_eq!(all("rm -rf . .."), [[["rm", "-rf", ".", ".."]]]);
        assert_eq!(all("echo 'a.'"), [[["echo", "a."]]]);
    }

    #[test]
    fn comments() {
        assert_eq!(all("# rm -rf /"), Vec::<Vec<Vec<String>>>::new());
        assert_eq!(all("ls # rm -rf /"), [[["ls"]]]);
        assert_eq!(all("#!/bin/sh"), Vec::<Vec<Vec<String>>>::new());
        assert_eq!(
            all("step #1: ls"),
            vec![vec![vec!["step", "#1"]], vec![vec!["ls"]]]
        );
    }
}
