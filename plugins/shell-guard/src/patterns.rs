//! Destructive patterns that are not a simple command: the fork bomb (a shell function that
//! spawns itself) and destructive SQL statements (`DROP TABLE`, `TRUNCATE`), found anywhere in
//! a text, whether in a `psql -c "…"` argument, a SQL tool's query or a thinking block.

use mnemom_plugin_sdk::policy::Severity;

/// A pattern found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Stable id of the rule.
    pub rule: &'static str,
    /// How serious.
    pub severity: Severity,
    /// What it does, for a human.
    pub what: String,
    /// Byte offset where it starts in the text.
    pub start: usize,
    /// The matched text (the compacted function for a fork bomb).
    pub matched: String,
}

/// Characters of a shell function name in a fork bomb (`:` is the classic one).
fn is_function_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '-')
}

/// A fork bomb `f(){ f|f& };f`, with any function name and any spacing.
pub fn fork_bomb(text: &str) -> Option<Hit> {
    let (compact, offsets): (String, Vec<usize>) = text
        .char_indices()
        .filter(|(_, c)| !c.is_whitespace())
        .map(|(i, c)| (c, i))
        .unzip();
    let mut search = 0;
    while let Some(found) = compact[search..].find("(){") {
        let open = search + found;
        search = open + 3;
        // The name is a run of name characters before `(){`; whitespace was removed, so try
        // the shortest suffix of the run first (`run :(){` → `:`).
        let candidates: Vec<usize> = compact[..open]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_function_char(*c))
            .map(|(i, _)| i)
            .collect();
        for name_start in candidates {
            let name = &compact[name_start..open];
            let body = &compact[open + 3..];
            let spawn = format!("{name}|{name}&");
            let Some(after) = body.strip_prefix(&spawn) else {
                continue;
            };
            let after = after.strip_prefix(';').unwrap_or(after);
            if after
                .strip_prefix("};")
                .is_some_and(|call| call.starts_with(name))
            {
                let start = compact[..name_start].chars().count();
                return Some(Hit {
                    rule: "fork-bomb",
                    severity: Severity::Critical,
                    what:
                        "a fork bomb: spawns processes until the machine hangs and must be rebooted"
                            .to_owned(),
                    start: offsets.get(start).copied().unwrap_or(0),
                    matched: format!("{name}(){{ {name}|{name}& }};{name}"),
                });
            }
        }
    }
    None
}

/// A case-insensitive keyword at `at` in `text` that is a whole word.
fn keyword_at(text: &str, at: usize, keyword: &str) -> bool {
    let bytes = text.as_bytes();
    let end = at + keyword.len();
    end <= bytes.len()
        && bytes[at..end].eq_ignore_ascii_case(keyword.as_bytes())
        && (at == 0 || !is_ident_byte(bytes[at - 1]))
        && bytes.get(end).is_none_or(|b| !is_ident_byte(*b))
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Reads SQL tokens: whitespace-separated words of identifier characters.
struct Sql<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Sql<'a> {
    fn skip_space(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// The next word if it is `keyword` (any case); advances past it.
    fn keyword(&mut self, keyword: &str) -> Option<&'a str> {
        let save = self.pos;
        self.skip_space();
        if keyword_at(self.text, self.pos, keyword) {
            let word = &self.text[self.pos..self.pos + keyword.len()];
            self.pos += keyword.len();
            Some(word)
        } else {
            self.pos = save;
            None
        }
    }

    /// The next identifier: `users`, `public.users`, `"Users"`, `` `users` ``, `[dbo].[users]`.
    fn identifier(&mut self) -> Option<&'a str> {
        self.skip_space();
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut end = start;
        loop {
            let part = end;
            match bytes.get(end) {
                Some(&quote @ (b'"' | b'`' | b'[')) => {
                    let close = if quote == b'[' { b']' } else { quote };
                    let len = bytes[end + 1..].iter().position(|&b| b == close)?;
                    end += len + 2;
                }
                _ => {
                    while bytes
                        .get(end)
                        .is_some_and(|&b| is_ident_byte(b) || b == b'$')
                    {
                        end += 1;
                    }
                }
            }
            if end == part {
                return None;
            }
            let next_part = bytes
                .get(end + 1)
                .is_some_and(|&n| is_ident_byte(n) || matches!(n, b'"' | b'`' | b'['));
            if bytes.get(end) == Some(&b'.') && next_part {
                end += 1;
                continue;
            }
            break;
        }
        self.pos = end;
        Some(&self.text[start..end])
    }

    /// Whether the statement ends here: `;`, the end of the text, or a closing quote or
    /// parenthesis (the end of a `psql -c "…"` argument or a JSON string).
    fn at_statement_end(&mut self) -> bool {
        self.skip_space();
        match self.text[self.pos..].chars().next() {
            None => true,
            Some(c) => matches!(c, ';' | '"' | '\'' | '`' | ')' | '\u{201d}' | '\u{2019}'),
        }
    }
}

fn is_upper(word: &str) -> bool {
    word.bytes().all(|b| !b.is_ascii_lowercase())
}

/// `DROP TABLE|DATABASE|SCHEMA [IF EXISTS] name[, name…] [CASCADE|RESTRICT]` and
/// `TRUNCATE [TABLE] name[, name…]` statements. Written in upper case they count wherever they
/// appear; in other cases only when the statement visibly ends after its names (`;`, the end
/// of the text or of a quoted argument), so that prose such as "truncate table names to 10
/// characters" or "drop table rows we no longer need" is not flagged.
pub fn sql_statements(text: &str) -> Vec<Hit> {
    let mut hits = Vec::new();
    let lower = text.to_ascii_lowercase();
    for keyword in ["drop", "truncate"] {
        let mut search = 0;
        while let Some(found) = lower[search..].find(keyword) {
            let start = search + found;
            search = start + keyword.len();
            if !keyword_at(text, start, keyword) {
                continue;
            }
            if let Some(hit) = statement(text, start, keyword) {
                hits.push(hit);
            }
        }
    }
    hits.sort_by_key(|h| h.start);
    hits
}

fn statement(text: &str, start: usize, keyword: &str) -> Option<Hit> {
    let mut sql = Sql {
        text,
        pos: start + keyword.len(),
    };
    let verb = &text[start..sql.pos];
    let (object, what) = if keyword == "drop" {
        let (object, what) = [
            ("table", "DROP TABLE deletes the table and all its rows"),
            (
                "database",
                "DROP DATABASE deletes the database and everything in it",
            ),
            ("schema", "DROP SCHEMA deletes the schema and its tables"),
        ]
        .into_iter()
        .find_map(|(object, what)| sql.keyword(object).map(|word| (Some(word), what)))?;
        if sql.keyword("if").is_some() {
            sql.keyword("exists")?;
        }
        (object, what)
    } else {
        (
            sql.keyword("table"),
            "TRUNCATE deletes every row of the table",
        )
    };
    sql.identifier()?;
    loop {
        let save = sql.pos;
        sql.skip_space();
        if text[sql.pos..].starts_with(',') {
            sql.pos += 1;
            if sql.identifier().is_some() {
                continue;
            }
        }
        sql.pos = save;
        break;
    }
    if sql.keyword("cascade").is_none() {
        sql.keyword("restrict");
    }
    let mut end = sql.pos;
    let ended = sql.at_statement_end();
    if text[sql.pos..].starts_with(';') {
        end = sql.pos + 1;
    }
    let shouted = is_upper(verb) && object.is_some_and(is_upper);
    (ended || shouted).then(|| Hit {
        rule: "sql-destroy",
        severity: Severity::High,
        what: what.to_owned(),
        start,
        matched: text[start..end].to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_bombs_with_any_name_and_spacing() {
        let hit = fork_bomb("run :(){ :|:& };: now").unwrap();
        assert_eq!(hit.severity, Severity::Critical);
        assert_eq!(hit.matched, ":(){ :|:& };:");
        assert_eq!(hit.start, 4);
        assert!(fork_bomb(":(){:|:&};:").is_some());
        assert!(fork_bomb("bomb() { bomb | bomb & }; bomb").is_some());
        assert!(fork_bomb("f(){ f|f & ; }; f").is_some());
        assert!(fork_bomb("greet() { echo hi; }; greet").is_none());
        assert!(fork_bomb("f(){ g|g& };f").is_none());
        assert!(fork_bomb("(){").is_none());
    }

    fn matched(text: &str) -> Vec<String> {
        sql_statements(text)
            .into_iter()
            .map(|h| h.matched)
            .collect()
    }

    #[test]
    fn destructive_sql() {
        assert_eq!(matched("DROP TABLE users"), ["DROP TABLE users"]);
        assert_eq!(
            matched("psql -c \"drop table if exists public.users, orders cascade;\""),
            ["drop table if exists public.users, orders cascade;"]
        );
        assert_eq!(
            matched("DROP DATABASE prod; -- gone"),
            ["DROP DATABASE prod;"]
        );
        assert_eq!(
            matched("I will DROP SCHEMA app right away"),
            ["DROP SCHEMA app"]
        );
        assert_eq!(matched("TRUNCATE TABLE events"), ["TRUNCATE TABLE events"]);
        assert_eq!(matched("truncate audit_log;"), ["truncate audit_log;"]);
        assert_eq!(
            matched("sqlite3 db 'truncate table t'"),
            ["truncate table t"]
        );
        assert_eq!(matched("DROP TABLE \"Users\";"), ["DROP TABLE \"Users\";"]);
    }

    #[test]
    fn prose_and_other_sql_pass() {
        for text in [
            "truncate table names to 10 characters",
            "we should truncate it.",
            "truncate -s 0 app.log",
            "Drop table rows we no longer need",
            "I'll drop the table from the report",
            "DROP INDEX idx_users_email;",
            "backdrop table",
            "SELECT * FROM users; -- no drops here",
            "drop table",
        ] {
            assert!(matched(text).is_empty(), "{text}");
        }
    }
}
