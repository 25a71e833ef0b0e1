"""A `sendMessage` request body, checked by the bot's own Telegram library (aiogram 3).

Usage: aiogram_check.py JSON

Exits 0 when aiogram's `SendMessage` takes the body as it is (no field it does not know, each
field of its type), its `reply_markup` is an `InlineKeyboardMarkup`, and every button's
`callback_data` is within Telegram's 1-64 bytes; otherwise prints why and exits 1.
"""

import json
import sys

from aiogram.methods import SendMessage
from aiogram.types import InlineKeyboardMarkup


def main(argv):
    body = json.loads(argv[1])
    unknown = set(body) - set(SendMessage.model_fields)
    if unknown:
        sys.exit(f"fields SendMessage does not have: {sorted(unknown)}")
    message = SendMessage.model_validate(body)
    if not isinstance(message.reply_markup, InlineKeyboardMarkup):
        sys.exit(f"reply_markup is not an inline keyboard: {message.reply_markup!r}")
    for row in message.reply_markup.inline_keyboard:
        for button in row:
            size = len((button.callback_data or "").encode())
            if not 1 <= size <= 64:
                sys.exit(f"callback_data of {button.text!r} is {size} bytes")
    if message.parse_mode != "Markdown":
        sys.exit(f"parse_mode {message.parse_mode!r}, the bot sends Markdown")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
