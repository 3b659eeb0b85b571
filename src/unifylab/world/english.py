"""English the worlds' sentences share: the caption question, number words and the indefinite article."""

CAPTION_QUESTION = "describe the image."  # the one question that asks for a caption, in every world

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def article(phrase: str) -> str:
    """'an orange cross', 'a red circle': the phrase with its indefinite article."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase
