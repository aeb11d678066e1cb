//! EC2's answers read into a small element tree: element names without their namespace, the
//! text of leaf elements unescaped, and a few ways down it (`child`, `items`, `text`). EC2
//! answers are small (a page of instances is at most a few hundred kilobytes), so a tree is
//! simpler to read from than a stream, and the readers in `image` and `instances` stay short.

use std::borrow::Cow;

/// One element: its local name, its text (leaves only: EC2 never mixes text and elements)
/// and its child elements in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child element named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the child at the end of `path` (`["instanceState", "name"]`), if it is there
    /// and not empty.
    pub fn text(&self, path: &[&str]) -> Option<&str> {
        let mut at = self;
        for name in path {
            at = at.child(name)?;
        }
        (!at.text.is_empty()).then_some(at.text.as_str())
    }

    /// The `<item>` elements of the list child `name` (EC2's way of writing every list:
    /// `<tagSet><item>…</item></tagSet>`); none when the list is absent.
    pub fn items<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Element> + 'a {
        self.child(name)
            .into_iter()
            .flat_map(|list| list.children.iter().filter(|c| c.name == "item"))
    }

    /// A `tagSet` as pairs of key and value.
    pub fn tags(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.items("tagSet").filter_map(|t| {
            let key = t.text(&["key"])?;
            Some((key.to_string(), t.text(&["value"]).unwrap_or_default().to_string()))
        })
    }
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable XML: {0}")]
pub struct XmlError(String);

/// Parses a whole document into its root element.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    for token in xmlparser::Tokenizer::from(text) {
        let token = token.map_err(|e| XmlError(e.to_string()))?;
        match token {
            xmlparser::Token::ElementStart { local, .. } => {
                if root.is_some() {
                    return Err(XmlError("content after the root element".into()));
                }
                open.push(Element {
                    name: local.as_str().to_string(),
                    ..Element::default()
                });
            }
            xmlparser::Token::ElementEnd { end, .. } => {
                if matches!(end, xmlparser::ElementEnd::Open) {
                    continue;
                }
                let done = open
                    .pop()
                    .ok_or_else(|| XmlError("a closing tag with no opening one".into()))?;
                if let xmlparser::ElementEnd::Close(_, local) = end {
                    if local.as_str() != done.name {
                        return Err(XmlError(format!("<{}> closed by </{}>", done.name, local.as_str())));
                    }
                }
                match open.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            xmlparser::Token::Text { text } | xmlparser::Token::Cdata { text, .. } => {
                if let Some(current) = open.last_mut() {
                    let raw = text.as_str();
                    let piece = if matches!(token, xmlparser::Token::Cdata { .. }) {
                        Cow::Borrowed(raw)
                    } else {
                        unescape(raw)?
                    };
                    current.text.push_str(&piece);
                }
            }
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err(XmlError(format!("<{}> is never closed", open[0].name)));
    }
    let mut root = root.ok_or_else(|| XmlError("no root element".into()))?;
    trim_texts(&mut root);
    Ok(root)
}

/// Leaves keep their text trimmed; elements with children keep none (the indentation between
/// them).
fn trim_texts(element: &mut Element) {
    if element.children.is_empty() {
        let trimmed = element.text.trim();
        if trimmed.len() != element.text.len() {
            element.text = trimmed.to_string();
        }
    } else {
        element.text.clear();
        element.children.iter_mut().for_each(trim_texts);
    }
}

/// XML's five named entities and numeric character references.
fn unescape(raw: &str) -> Result<Cow<'_, str>, XmlError> {
    if !raw.contains('&') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find(';')
            .ok_or_else(|| XmlError(format!("an unfinished entity in {raw:?}")))?;
        let entity = &rest[at + 1..at + end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| XmlError(format!("an unknown entity &{entity};")))?
            }
        };
        out.push(c);
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_texts_lists_and_entities() {
        let doc = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
    <imagesSet>
        <item>
            <imageId>ami-1a2b3c4d</imageId>
            <name>a &amp; b &lt;c&gt; &#65;&#x42;</name>
            <tagSet><item><key>App</key><value>argos</value></item><item><key>Empty</key><value/></item></tagSet>
            <description><![CDATA[x < y]]></description>
        </item>
    </imagesSet>
</DescribeImagesResponse>"#,
        )
        .expect("parses");
        assert_eq!(doc.name, "DescribeImagesResponse");
        assert_eq!(doc.text(&["requestId"]), Some("59dbff89-35bd-4eac-99ed-be587EXAMPLE"));
        let images: Vec<_> = doc.items("imagesSet").collect();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].text(&["name"]), Some("a & b <c> AB"));
        assert_eq!(images[0].text(&["description"]), Some("x < y"));
        assert_eq!(
            images[0].tags().collect::<Vec<_>>(),
            vec![("App".into(), "argos".into()), ("Empty".into(), String::new())]
        );
        assert_eq!(doc.items("reservationSet").count(), 0);
        assert_eq!(images[0].text(&["missing", "deeper"]), None);
    }

    #[test]
    fn refuses_broken_documents() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a>&bogus;</a>",
            "<a>&amp</a>",
            "<a/><b/>",
            "junk",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
