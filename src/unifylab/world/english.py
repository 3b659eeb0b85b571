"""English the worlds' sentences share: number words and the indefinite article."""

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def article(phrase: str) -> str:
    """'an orange cross', 'a red circle': the phrase with its indefinite article."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase
