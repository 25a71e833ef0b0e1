//! The Telegram Bot API, as the bot used it to tell an avatar's owner that training finished:
//! `sendMessage` with the bot's own text (`parse_mode=Markdown`) and buttons, and what each of
//! Telegram's answers means for trying again.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::avatar::TrainingType;
use crate::config::TelegramConfig;

/// A `sendMessage` request body, as the Bot API documents it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendMessage {
    pub chat_id: ChatId,
    pub text: String,
    pub parse_mode: &'static str,
    pub reply_markup: InlineKeyboard,
}

/// `users.telegram_id` is text in the bot's table; Telegram takes an integer id (or a
/// `@channel` name), so a numeric one goes as a number, as the bot's library sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ChatId {
    Id(i64),
    Name(String),
}

impl ChatId {
    pub fn from_stored(telegram_id: &str) -> Self {
        let trimmed = telegram_id.trim();
        trimmed
            .parse()
            .map(ChatId::Id)
            .unwrap_or_else(|_| ChatId::Name(trimmed.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InlineKeyboard {
    pub inline_keyboard: Vec<Vec<Button>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Button {
    pub text: &'static str,
    pub callback_data: String,
}

/// What the message says about the avatar.
pub struct AboutAvatar<'a> {
    pub avatar_id: Uuid,
    pub name: &'a str,
    /// As stored (`PORTRAIT`, `portrait`, `STYLE`, none), read by the domain's parser.
    pub training_type: Option<TrainingType>,
}

impl AboutAvatar<'_> {
    /// The bot's wording: a portrait avatar, or (as the bot reads a missing type) a style one.
    fn kind(&self) -> (&'static str, &'static str) {
        match self.training_type {
            Some(TrainingType::Portrait) => ("🎭", "Портретный"),
            Some(TrainingType::Style) | None => ("🎨", "Художественный"),
        }
    }
}

/// The bot's message for a trained avatar, word for word (`notification_service.py`), with its
/// two buttons: the gallery, and generating with this avatar.
pub fn ready_message(chat_id: ChatId, avatar: &AboutAvatar<'_>) -> SendMessage {
    let (emoji, kind) = avatar.kind();
    SendMessage {
        chat_id,
        text: format!(
            "🎉 **Ваш аватар готов!**\n\n\
             {emoji} **{name}** ({kind} стиль)\n\
             ✅ Обучение завершено успешно\n\n\
             Теперь вы можете использовать аватар для генерации изображений!\n\n\
             Перейдите в меню → Аватары для использования.",
            name = escape_markdown(avatar.name),
        ),
        parse_mode: "Markdown",
        reply_markup: InlineKeyboard {
            inline_keyboard: vec![
                vec![Button {
                    text: "🎭 Мои аватары",
                    callback_data: "avatar_gallery".into(),
                }],
                vec![Button {
                    text: "🎨 Создать изображение",
                    callback_data: format!("avatar_generate:{}", avatar.avatar_id),
                }],
            ],
        },
    }
}

/// The bot sends nothing when training fails; its users wait for an answer, so this one says
/// it in the bot's voice, and offers the gallery (where a new avatar is started).
pub fn failed_message(chat_id: ChatId, avatar: &AboutAvatar<'_>) -> SendMessage {
    let (emoji, kind) = avatar.kind();
    SendMessage {
        chat_id,
        text: format!(
            "😔 **Аватар не удалось обучить**\n\n\
             {emoji} **{name}** ({kind} стиль)\n\
             ❌ Обучение завершилось с ошибкой\n\n\
             Попробуйте создать аватар ещё раз: меню → Аватары.",
            name = escape_markdown(avatar.name),
        ),
        parse_mode: "Markdown",
        reply_markup: InlineKeyboard {
            inline_keyboard: vec![vec![Button {
                text: "🎭 Мои аватары",
                callback_data: "avatar_gallery".into(),
            }]],
        },
    }
}

/// What the user typed, safe in Telegram's legacy Markdown: outside an entity (the bot's
/// `**name**` is two empty bold entities around plain text), `\` before `_ * ` [` makes each
/// literal. Unescaped, `Maria_Portrait` opens an italic entity that never closes, and Telegram
/// refuses the whole message ("can't parse entities"). A backslash escapes only those four, so
/// it stays as it is, except a last one, which would escape the `*` after the name: an
/// invisible zero-width space keeps it apart.
pub fn escape_markdown(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '_' | '*' | '`' | '[') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    if escaped.ends_with('\\') {
        escaped.push('\u{200B}');
    }
    escaped
}

/// Telegram's answer, as it decides what happens next.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Sent,
    /// 429: wait this long (`parameters.retry_after`), then send again.
    RetryAfter(Duration, String),
    /// Sending again cannot succeed: the user blocked the bot (403), the chat is gone or the
    /// request is refused (400).
    Refused(String),
    /// Telegram or the way to it is unavailable (5xx, network, timeout), or it does not know
    /// our token (401/404, fixed by the operator): try again later.
    Unavailable(String),
}

pub struct BotApi {
    http: reqwest::Client,
    /// Holds the token: never logged, never in an error.
    send_message_url: String,
}

impl BotApi {
    pub fn new(config: &TelegramConfig) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(config.request_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client with a timeout builds"),
            send_message_url: format!(
                "{}/bot{}/sendMessage",
                config.api_url,
                config.token.expose()
            ),
        }
    }

    pub async fn send(&self, message: &SendMessage) -> Answer {
        let response = match self
            .http
            .post(&self.send_message_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(message).expect("a message serializes"))
            .send()
            .await
        {
            Ok(response) => response,
            // Without the URL: it carries the token.
            Err(e) => return Answer::Unavailable(e.without_url().to_string()),
        };
        let status = response.status().as_u16();
        let body: Value = match response.text().await {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            Err(e) => return Answer::Unavailable(e.without_url().to_string()),
        };
        classify(status, &body)
    }
}

/// `{"ok": true, "result": Message}` or `{"ok": false, "error_code", "description",
/// "parameters": {"retry_after"}}`.
pub fn classify(status: u16, body: &Value) -> Answer {
    let description = body
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"));
    let described = format!("Telegram answered {status}: {description}");
    match status {
        200..=299 if body.get("ok") == Some(&Value::Bool(true)) => Answer::Sent,
        200..=299 => Answer::Unavailable(format!("Telegram answered {status} without ok: true")),
        429 => {
            let seconds = body
                .pointer("/parameters/retry_after")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 3600);
            Answer::RetryAfter(Duration::from_secs(seconds), described)
        }
        401 | 404 => Answer::Unavailable(described),
        400..=499 => Answer::Refused(described),
        _ => Answer::Unavailable(described),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn maria() -> AboutAvatar<'static> {
        AboutAvatar {
            avatar_id: Uuid::nil(),
            name: "Maria_Portrait",
            training_type: TrainingType::parse("PORTRAIT"),
        }
    }

    #[test]
    fn the_ready_message_is_the_bots_text_with_its_two_buttons() {
        let message = ready_message(ChatId::from_stored("123456789"), &maria());
        assert_eq!(message.chat_id, ChatId::Id(123456789));
        assert_eq!(
            message.text,
            "🎉 **Ваш аватар готов!**\n\n🎭 **Maria\\_Portrait** (Портретный стиль)\n\
             ✅ Обучение завершено успешно\n\n\
             Теперь вы можете использовать аватар для генерации изображений!\n\n\
             Перейдите в меню → Аватары для использования."
        );
        let body = serde_json::to_value(&message).unwrap();
        assert_eq!(body["parse_mode"], "Markdown");
        assert_eq!(
            body["reply_markup"],
            json!({"inline_keyboard": [
                [{"text": "🎭 Мои аватары", "callback_data": "avatar_gallery"}],
                [{"text": "🎨 Создать изображение",
                  "callback_data": "avatar_generate:00000000-0000-0000-0000-000000000000"}],
            ]})
        );
    }

    #[test]
    fn a_style_avatar_or_one_without_a_type_is_named_as_the_bot_names_it() {
        for kind in [Some("style"), Some("STYLE"), None].map(|k| k.and_then(TrainingType::parse)) {
            let avatar = AboutAvatar {
                training_type: kind,
                ..maria()
            };
            let text = ready_message(ChatId::Id(1), &avatar).text;
            assert!(
                text.contains("🎨 **Maria\\_Portrait** (Художественный стиль)"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_failure_message_names_the_avatar_and_offers_the_gallery() {
        let message = failed_message(ChatId::from_stored("@someone"), &maria());
        assert_eq!(message.chat_id, ChatId::Name("@someone".into()));
        assert!(message.text.contains("Maria\\_Portrait"));
        assert!(message.text.contains("не удалось"));
        assert_eq!(message.reply_markup.inline_keyboard.len(), 1);
        assert_eq!(
            message.reply_markup.inline_keyboard[0][0].callback_data,
            "avatar_gallery"
        );
    }

    #[test]
    fn every_markdown_character_a_user_can_type_is_escaped() {
        assert_eq!(escape_markdown("plain Имя"), "plain Имя");
        assert_eq!(escape_markdown("a_b*c`d[e]"), "a\\_b\\*c\\`d\\[e]");
        assert_eq!(escape_markdown("a\\b"), "a\\b");
        assert_eq!(escape_markdown("ends\\"), "ends\\\u{200B}");
    }

    #[test]
    fn telegrams_answers_decide_what_follows() {
        assert_eq!(
            classify(200, &json!({"ok": true, "result": {"message_id": 1}})),
            Answer::Sent
        );
        let wait = classify(
            429,
            &json!({"ok": false, "error_code": 429,
                    "description": "Too Many Requests: retry after 7",
                    "parameters": {"retry_after": 7}}),
        );
        assert!(matches!(wait, Answer::RetryAfter(d, _) if d == Duration::from_secs(7)));
        for (status, description) in [
            (403, "Forbidden: bot was blocked by the user"),
            (400, "Bad Request: chat not found"),
        ] {
            let answer = classify(
                status,
                &json!({"ok": false, "error_code": status, "description": description}),
            );
            assert!(
                matches!(&answer, Answer::Refused(text) if text.contains(description)),
                "{answer:?}"
            );
        }
        for status in [401, 404, 500, 502] {
            assert!(matches!(
                classify(status, &json!({"ok": false})),
                Answer::Unavailable(_)
            ));
        }
        assert!(matches!(
            classify(200, &json!({"ok": false})),
            Answer::Unavailable(_)
        ));
    }
}
