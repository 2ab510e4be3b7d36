//! Field paths (`spec.http[0].route[1].destination.subset`) and name suggestions.

use std::fmt;

/// The path of a field inside a resource, as Kubernetes and Istio print it:
/// `spec.http[0].match[1].headers[end-user].exact`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path of the whole resource.
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// Parses a path written as `spec.http[0].route`.
    pub fn parse(text: &str) -> Self {
        FieldPath(text.to_owned())
    }

    /// Whether this is the path of the whole resource.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path of a field or map key under this one.
    ///
    /// Names that are not plain identifiers (map keys such as `end-user` or `app.kubernetes.io/name`)
    /// are written in brackets, as kubectl does.
    pub fn key(&self, name: &str) -> Self {
        let mut path = self.0.clone();
        if is_identifier(name) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
        } else {
            path.push('[');
            path.push_str(name);
            path.push(']');
        }
        FieldPath(path)
    }

    /// The path of a sequence element under this one.
    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The paths from this one up to the root, this one first (`a.b[0]`, `a.b`, `a`, ``).
    pub fn ancestors(&self) -> impl Iterator<Item = FieldPath> + '_ {
        let text = self.0.as_str();
        let mut cuts: Vec<usize> = text
            .char_indices()
            .filter(|(_, c)| *c == '.' || *c == '[')
            .map(|(i, _)| i)
            .collect();
        cuts.reverse();
        std::iter::once(self.clone())
            .chain(
                cuts.into_iter()
                    .map(move |i| FieldPath(text[..i].to_owned())),
            )
            .chain((!text.is_empty()).then(FieldPath::root))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$' || c == '@')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The candidate closest to `given`, when one is close enough to be a likely typo.
pub fn closest_match<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let given_lower = given.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&given_lower, &candidate.to_ascii_lowercase());
            (candidate, score)
        })
        .filter(|(candidate, score)| *score >= 0.8 && *candidate != given)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(candidate, _)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_as_kubectl_does() {
        let path = FieldPath::root()
            .key("spec")
            .key("http")
            .index(0)
            .key("match")
            .index(1)
            .key("headers")
            .key("end-user")
            .key("exact");
        assert_eq!(
            path.as_str(),
            "spec.http[0].match[1].headers[end-user].exact"
        );
    }

    #[test]
    fn ancestors_walk_up_to_the_root() {
        let path = FieldPath::parse("spec.http[0].route");
        let all: Vec<String> = path.ancestors().map(|p| p.to_string()).collect();
        assert_eq!(
            all,
            [
                "spec.http[0].route",
                "spec.http[0]",
                "spec.http",
                "spec",
                ""
            ]
        );
    }

    #[test]
    fn suggests_close_names_only() {
        let fields = ["host", "subset", "port"];
        assert_eq!(closest_match("subst", fields), Some("subset"));
        assert_eq!(closest_match("Host", fields), Some("host"));
        assert_eq!(closest_match("weight", fields), None);
    }
}
