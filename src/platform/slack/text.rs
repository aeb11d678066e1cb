//! Text between Argos and Slack's markup: what users typed is decoded from Slack's markup into
//! plain text for the parser, and everything the bot writes is escaped, so a `<!channel>` a
//! user typed is shown, never sent as a ping.
//!
//! Slack sends message text with `&`, `<` and `>` escaped and with mentions, channels and
//! links in angle brackets (`<!here>`, `<@U123>`, `<#C1|deploys>`, `<https://x|x>`). The bot's
//! own messages are Discord-flavoured Markdown (`**bold**`, backticks, code fences); Slack's
//! mrkdwn wants `*bold*`, and takes backticks and fences as they are.

/// Escapes the three characters Slack reads as markup. Whatever else is in the text (a
/// `@channel` typed as plain text included) is shown as written, because the bot posts with
/// `link_names` off.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The bot's Markdown as Slack mrkdwn, escaped: `**bold**` becomes `*bold*`.
pub fn mrkdwn(text: &str) -> String {
    escape(text).replace("**", "*")
}

/// What a user typed, from Slack's markup back to plain text: `<!channel>` → `@channel`,
/// `<@U123|ann>` → `@U123`, `<#C1|deploys>` → `#deploys`, `<!subteam^S1|@ops>` → `@ops`,
/// `<https://x|label>` → `https://x`, and `&lt;` `&gt;` `&amp;` unescaped.
pub fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&unescape(&rest[..start]));
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            out.push_str(&unescape(&rest[start..]));
            return out;
        };
        out.push_str(&decode_token(&after[..end]));
        rest = &after[end + 1..];
    }
    out.push_str(&unescape(rest));
    out
}

/// One `<...>` token, without its brackets.
fn decode_token(token: &str) -> String {
    let (target, label) = match token.split_once('|') {
        Some((t, l)) => (t, Some(l)),
        None => (token, None),
    };
    if let Some(special) = target.strip_prefix('!') {
        if let Some(group) = special.strip_prefix("subteam^") {
            return label.map(unescape).unwrap_or_else(|| format!("@{group}"));
        }
        // `<!channel>`, `<!here>`, `<!everyone>`, `<!date^...|fallback>`.
        return match label {
            Some(l) if special.starts_with("date") => unescape(l),
            _ => format!("@{}", unescape(special)),
        };
    }
    if let Some(user) = target.strip_prefix('@') {
        return format!("@{}", unescape(user));
    }
    if let Some(channel) = target.strip_prefix('#') {
        return format!("#{}", unescape(label.unwrap_or(channel)));
    }
    // A link: the address is what was typed (Slack adds the brackets).
    unescape(target)
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Cuts text to at most `max` characters, on a character boundary, marking the cut.
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Splits mrkdwn into pieces of at most `max` characters (a section block's text limit),
/// at line ends where it can, keeping a code fence open across pieces balanced.
pub fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_fence = false;
    for line in text.split('\n') {
        let line = fit(line, max.saturating_sub(8));
        if !current.is_empty() && current.chars().count() + line.chars().count() + 5 > max {
            if in_fence {
                current.push_str("\n```");
            }
            out.push(std::mem::take(&mut current));
            if in_fence {
                current.push_str("```\n");
            }
        } else if !current.is_empty() {
            current.push('\n');
        }
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        current.push_str(&line);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_pings_come_back_as_plain_text_and_go_out_escaped() {
        assert_eq!(decode("<!channel> deploy"), "@channel deploy");
        assert_eq!(decode("<!here|here> x"), "@here x");
        assert_eq!(decode("<!everyone>"), "@everyone");
        assert_eq!(decode("<!subteam^S0OPS|@ops> go"), "@ops go");
        assert_eq!(decode("<@U0ADMIN> <#C0DEP|deploys>"), "@U0ADMIN #deploys");
        assert_eq!(
            decode("open <https://x.test/a?b=1&amp;c=2|x.test>"),
            "open https://x.test/a?b=1&c=2"
        );
        assert_eq!(decode("a &lt;b&gt; &amp;&amp; c"), "a <b> && c");
        assert_eq!(decode("unclosed <here"), "unclosed <here");
        // What the bot then writes cannot be read as markup.
        let reply = format!("invalid environment name '{}'", decode("<!channel>"));
        assert_eq!(escape(&reply), "invalid environment name '@channel'");
        assert_eq!(escape("<!channel> & <@U1>"), "&lt;!channel&gt; &amp; &lt;@U1&gt;");
    }

    #[test]
    fn markdown_becomes_mrkdwn() {
        assert_eq!(
            mrkdwn("⏳ **staging · deploy** · `x<y`"),
            "⏳ *staging · deploy* · `x&lt;y`"
        );
    }

    #[test]
    fn long_text_splits_into_sections_with_balanced_fences() {
        let text = format!(
            "head\n```\n{}\n```\ntail",
            (0..200).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n")
        );
        let parts = chunks(&text, 300);
        assert!(parts.len() > 3);
        for p in &parts {
            assert!(p.chars().count() <= 300, "{} chars", p.chars().count());
            assert_eq!(p.matches("```").count() % 2, 0, "unbalanced fence in {p:?}");
        }
        assert_eq!(chunks("", 300), vec![String::new()]);
        assert_eq!(fit("abcdef", 4), "abc…");
    }
}
