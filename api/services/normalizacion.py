"""Chilean phones, RUTs and emails in one canonical form, through the libraries that
know them (phonenumbers, python-stdnum). Each function raises ValueError with a Spanish
message when the input cannot be a valid value."""

from __future__ import annotations

import re

import phonenumbers
from stdnum.cl import rut as stdrut
from stdnum.exceptions import ValidationError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def telefono(raw: str, region: str = "CL") -> str:
    """E.164. Accepts `9 8765 4321`, `+56 9 8765 4321`, `098765432`, `87654321`
    (mobiles of 8 digits from before 2016 gain their leading 9) and foreign numbers
    written with their `+` country code."""
    text = raw.strip()
    digits = re.sub(r"\D", "", text)
    if not text.startswith("+") and region == "CL":
        if len(digits) == 9 and digits.startswith("0"):
            digits = digits[1:]
        if len(digits) == 8 and digits[0] in "3456789":
            digits = "9" + digits
        text = digits
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError("no es un número de teléfono") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("no es un número de teléfono válido (ej.: +56 9 8765 4321)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def rut(raw: str) -> str:
    """Compact RUT (digits and check digit, `K` uppercase), e.g. `12345678K`."""
    try:
        return stdrut.validate(raw)
    except ValidationError:
        raise ValueError("RUT inválido (revise el dígito verificador)") from None


def rut_formateado(compact: str) -> str:
    return stdrut.format(compact)


def email(raw: str) -> str:
    value = raw.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("no es un email válido")
    return value
