//! productpage's HTML, with the markers people and tests look for in the real one: the
//! title, `glyphicon-star` spans inside `<font color=…>`, the error sentences.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Fetched, PRODUCT_DESCRIPTION_HTML, PRODUCT_TITLE, ProductpageConfig};
use crate::server::escape_html;

/// Most stars drawn for one review; the real template draws as many as `ratings` says, a
/// bound keeps a broken backend from blowing up the page.
const MAX_STARS: i64 = 100;

/// The style names no glyphicon class, so counting `glyphicon-star` in the page counts
/// stars, as scripts written against the real page do.
const HEAD: &str = r#"<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Simple Bookstore App</title>
<style>
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #333; }
nav { background: #222; color: #eee; padding: 12px 24px; display: flex; justify-content: space-between; }
nav a { color: #9cf; }
.container { padding: 0 24px; }
.row { display: flex; flex-wrap: wrap; gap: 24px; }
.col { flex: 1 1 320px; }
.text-primary { color: #337ab7; }
.text-center { text-align: center; }
blockquote { border-left: 4px solid #eee; margin: 16px 0; padding: 8px 16px; }
span[class$="-star"]::before { content: "\2605"; }
span[class$="-empty"]::before { content: "\2606"; }
</style>
</head>
<body>
"#;

/// The index page: what productpage calls, and links to the product page.
pub(super) fn index(config: &ProductpageConfig) -> String {
    let mut html = String::from(HEAD);
    html.push_str("<nav><span>BookInfo Sample</span></nav>\n<div class=\"container\">\n");
    html.push_str("<h3 class=\"text-primary\">Hello! This is a simple bookstore application consisting of three services as shown below</h3>\n");
    html.push_str("<table class=\"table table-condensed table-bordered table-hover\">\n");
    let _ = writeln!(
        html,
        "<tr><th>name</th><td>http://{}</td></tr>\n<tr><th>endpoint</th><td>details</td></tr>",
        escape_html(&config.details.to_string())
    );
    html.push_str("<tr><th>children</th><td><table class=\"table table-condensed table-bordered table-hover\">\n<tr><th>name</th><th>endpoint</th><th>children</th></tr>\n");
    let _ = writeln!(
        html,
        "<tr><td>http://{}</td><td>details</td><td></td></tr>",
        escape_html(&config.details.to_string())
    );
    let _ = writeln!(
        html,
        "<tr><td>http://{}</td><td>reviews</td><td><table class=\"table table-condensed table-bordered table-hover\">\n<tr><th>name</th><th>endpoint</th><th>children</th></tr>\n<tr><td>http://{}</td><td>ratings</td><td></td></tr>\n</table></td></tr>",
        escape_html(&config.reviews.to_string()),
        escape_html(&config.ratings.to_string())
    );
    html.push_str("</table></td></tr>\n</table>\n");
    html.push_str("<p><h4>Click on one of the links below to auto generate a request to the backend as a real user or a tester</h4></p>\n");
    html.push_str("<p><a href=\"/productpage?u=normal\">Normal user</a></p>\n");
    html.push_str("<p><a href=\"/productpage?u=test\">Test user</a></p>\n");
    html.push_str("</div>\n</body>\n</html>\n");
    html
}

/// The product page for `user` (signed in or not) with what `details` and `reviews` said.
pub(super) fn product(user: Option<&str>, details: &Fetched, reviews: &Fetched) -> String {
    let mut html = String::from(HEAD);
    nav(&mut html, user);
    if user.is_none() {
        login_form(&mut html);
    }
    html.push_str("<div class=\"container\">\n<div class=\"row\">\n<div class=\"col\">\n");
    let _ = writeln!(
        html,
        "<h3 class=\"text-center text-primary\">{}</h3>",
        escape_html(PRODUCT_TITLE)
    );
    let _ = writeln!(html, "<p>Summary: {PRODUCT_DESCRIPTION_HTML}</p>");
    html.push_str("</div>\n</div>\n<div class=\"row\">\n<div class=\"col\">\n");
    details_section(&mut html, details);
    html.push_str("</div>\n<div class=\"col\">\n");
    reviews_section(&mut html, reviews);
    html.push_str("</div>\n</div>\n</div>\n</body>\n</html>\n");
    html
}

fn nav(html: &mut String, user: Option<&str>) {
    html.push_str("<nav class=\"navbar navbar-inverse navbar-static-top\">\n<a class=\"navbar-brand\" href=\"#\">BookInfo Sample</a>\n");
    match user {
        Some(user) => {
            let _ = writeln!(
                html,
                "<p class=\"navbar-text navbar-right\"><i class=\"glyphicon glyphicon-user\" aria-hidden=\"true\"></i><span style=\"padding-left: 5px;\">{} ( <a href=\"logout\">sign out</a> )</span></p>",
                escape_html(user)
            );
        }
        None => html.push_str(
            "<a class=\"btn btn-default navbar-btn navbar-right\" href=\"#login-modal\">Sign in</a>\n",
        ),
    }
    html.push_str("</nav>\n");
}

fn login_form(html: &mut String) {
    html.push_str(
        r#"<div id="login-modal" class="container">
<form method="post" action="login" name="login_form">
<input type="text" name="username" id="username" placeholder="User Name">
<input type="password" name="passwd" placeholder="Password">
<button type="submit">Sign in</button>
</form>
</div>
"#,
    );
}

fn details_section(html: &mut String, details: &Fetched) {
    if details.ok() {
        html.push_str("<h4 class=\"text-center text-primary\">Book Details</h4>\n<dl>\n");
        for (label, key) in [
            ("Type", "type"),
            ("Pages", "pages"),
            ("Publisher", "publisher"),
            ("Language", "language"),
            ("ISBN-10", "ISBN-10"),
            ("ISBN-13", "ISBN-13"),
        ] {
            let _ = writeln!(
                html,
                "<dt>{label}:</dt>{}",
                escape_html(&display(&details.body[key]))
            );
        }
        html.push_str("</dl>\n");
    } else {
        html.push_str(
            "<h4 class=\"text-center text-primary\">Error fetching product details!</h4>\n",
        );
        error_text(html, &details.body);
    }
}

fn reviews_section(html: &mut String, reviews: &Fetched) {
    if !reviews.ok() {
        html.push_str(
            "<h4 class=\"text-center text-primary\">Error fetching product reviews!</h4>\n",
        );
        error_text(html, &reviews.body);
        return;
    }
    html.push_str("<h4 class=\"text-center text-primary\">Book Reviews</h4>\n");
    let empty = Vec::new();
    let list = reviews.body["reviews"].as_array().unwrap_or(&empty);
    for review in list {
        html.push_str("<blockquote>\n");
        let _ = writeln!(html, "<p>{}</p>", escape_html(&display(&review["text"])));
        let _ = writeln!(
            html,
            "<small>{}</small>",
            escape_html(&display(&review["reviewer"]))
        );
        rating(html, &review["rating"]);
        let _ = write!(
            html,
            "<p><small>Reviews served by: <u>{}</u>",
            escape_html(&display(&reviews.body["podname"]))
        );
        let cluster = display(&reviews.body["clustername"]);
        if !cluster.is_empty() && cluster != "null" {
            let _ = write!(html, " on cluster <u>{}</u>", escape_html(&cluster));
        }
        html.push_str("</small></p>\n</blockquote>\n");
    }
}

/// Stars when the rating has a non-zero `stars`, else its `error`, else nothing (as the
/// real template's `if review.rating.stars … elif review.rating.error`).
fn rating(html: &mut String, rating: &Value) {
    let stars = rating["stars"].as_i64().unwrap_or(0);
    if stars != 0 {
        let full = stars.clamp(0, MAX_STARS);
        let _ = writeln!(
            html,
            "<font color=\"{}\">",
            escape_html(&display(&rating["color"]))
        );
        html.push_str("<!-- full stars: -->\n");
        for _ in 0..full {
            html.push_str("<span class=\"glyphicon glyphicon-star\"></span>\n");
        }
        html.push_str("<!-- empty stars: -->\n");
        for _ in full..5 {
            html.push_str("<span class=\"glyphicon glyphicon-star-empty\"></span>\n");
        }
        html.push_str("</font>\n");
    } else {
        let error = display(&rating["error"]);
        if !error.is_empty() {
            let _ = writeln!(html, "<p><i>{}</i></p>", escape_html(&error));
        }
    }
}

fn error_text(html: &mut String, body: &Value) {
    let error = display(&body["error"]);
    if !error.is_empty() {
        let _ = writeln!(html, "<p>{}</p>", escape_html(&error));
    }
}

/// A JSON value as the template prints it: strings bare, nothing for null or missing.
fn display(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fetched(body: Value) -> Fetched {
        Fetched { status: 200, body }
    }

    #[test]
    fn stars_are_drawn_like_the_real_template() {
        let reviews = fetched(
            json!({"podname": "reviews-v3-1", "clustername": "null", "reviews": [
                {"reviewer": "Reviewer1", "text": "Good", "rating": {"stars": 4, "color": "red"}},
                {"reviewer": "Reviewer2", "text": "Fine", "rating": {"error": "Ratings service is currently unavailable"}},
                {"reviewer": "Reviewer3", "text": "None"},
            ]}),
        );
        let page = product(None, &fetched(json!({"type": "paperback"})), &reviews);
        assert_eq!(page.matches("<font color=\"red\">").count(), 1);
        assert_eq!(page.matches("glyphicon glyphicon-star\"").count(), 4);
        assert_eq!(page.matches("glyphicon-star-empty").count(), 1);
        assert_eq!(page.matches("glyphicon-star").count(), 5);
        assert!(page.contains("<p><i>Ratings service is currently unavailable</i></p>"));
        assert!(page.contains("Reviews served by: <u>reviews-v3-1</u>"));
        assert!(!page.contains("on cluster"));
        assert!(page.contains("Sign in"));
    }

    #[test]
    fn text_from_backends_is_escaped() {
        let reviews = fetched(json!({"reviews": [{"reviewer": "<script>", "text": "a & b"}]}));
        let page = product(Some("<jason>"), &fetched(json!({})), &reviews);
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("a &amp; b"));
        assert!(page.contains("&lt;jason&gt; ( <a href=\"logout\">sign out</a> )"));
    }
}
