"""Generated, plainly emotional sentences for the four IEMOCAP-4 classes (happy, sad, neutral, angry).

The Space's bundled checkpoint is trained on a corpus whose text modality is these sentences run through a real
sentence encoder, so that its "type a conversation" tab answers typed text sensibly. The sentences are
deliberately plain: one emotion per sentence, said with common words, in varied templates. Deterministic for a
given ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np


__all__ = ["CLASS_WORDS", "SENTENCE_TEMPLATES", "emotional_sentence", "sentences_for_labels"]

#: Per class: adjectives (``{a}``), things that cause the feeling (``{c}``) and exclamations (``{e}``).
CLASS_WORDS: dict[str, dict[str, list[str]]] = {
    "hap": {
        "a": ["happy", "glad", "delighted", "thrilled", "overjoyed", "cheerful", "excited", "joyful", "so pleased"],
        "c": [
            "we won the game",
            "you came to visit",
            "I got the job",
            "the holidays are here",
            "my sister is getting married",
            "the sun is shining",
            "we are going on vacation",
            "you remembered my birthday",
        ],
        "e": ["Wonderful", "Yay", "Fantastic", "How lovely", "This is amazing", "Great news", "Hooray"],
    },
    "sad": {
        "a": ["sad", "unhappy", "miserable", "heartbroken", "depressed", "lonely", "devastated", "gloomy", "hopeless"],
        "c": [
            "my dog died",
            "she left me",
            "I lost my job",
            "nobody called me",
            "my grandmother passed away",
            "I failed the exam again",
            "we had to say goodbye",
            "everything fell apart",
        ],
        "e": ["I miss him so much", "I just want to cry", "It hurts so much", "Nothing matters anymore", "Sigh"],
    },
    "neu": {
        "a": ["fine", "okay", "alright", "ready", "here", "at the office", "on my way", "home now"],
        "c": [
            "the meeting is at three",
            "the bus leaves at noon",
            "the report is on the desk",
            "we need more paper",
            "the store opens at nine",
            "the train is on platform two",
            "the form has four pages",
            "the keys are in the drawer",
        ],
        "e": ["Okay", "Sure", "Right", "I see", "Noted", "Alright then"],
    },
    "ang": {
        "a": ["angry", "furious", "mad", "livid", "outraged", "annoyed", "fed up", "sick of this", "enraged"],
        "c": [
            "you lied to me",
            "you broke my car",
            "they cheated us",
            "you never listen",
            "you ruined everything",
            "you took my money",
            "you insulted my family",
            "you keep lying",
        ],
        "e": ["How dare you", "Get out", "Shut up", "That is outrageous", "I hate this", "Unbelievable"],
    },
}

#: Templates per class family; ``{a}``, ``{c}``, ``{e}`` are filled from :data:`CLASS_WORDS`.
SENTENCE_TEMPLATES: dict[str, list[str]] = {
    "emotional": [
        "I am so {a} right now.",
        "I feel {a} because {c}.",
        "{e}! {c}.",
        "{e}, I am really {a}.",
        "I can't believe {c}, I am {a}.",
        "Honestly, I'm {a} that {c}.",
        "{c} and I am {a}.",
        "{e}!",
        "You know what? I'm {a}.",
        "{e}. {c}, and I feel {a}.",
    ],
    "neutral": [
        "{c}.",
        "{e}, {c}.",
        "I am {a}. {c}.",
        "Just so you know, {c}.",
        "{e}. I'm {a}.",
        "Can you check whether {c}?",
        "I think {c}.",
    ],
}


def emotional_sentence(label: str, rng: np.random.Generator) -> str:
    """One generated sentence that plainly expresses ``label`` (``hap``, ``sad``, ``neu`` or ``ang``)."""
    if label not in CLASS_WORDS:
        raise ValueError(f"label {label!r}: expected one of {', '.join(CLASS_WORDS)}")
    words = CLASS_WORDS[label]
    templates = SENTENCE_TEMPLATES["neutral" if label == "neu" else "emotional"]
    template = templates[int(rng.integers(len(templates)))]
    fill = {key: values[int(rng.integers(len(values)))] for key, values in words.items()}
    text = template.format(**fill)
    return text[0].upper() + text[1:]


def sentences_for_labels(labels: list[int], label_names: list[str], rng: np.random.Generator) -> list[str]:
    """A generated sentence for each label index (``label_names[i]`` names class ``i``)."""
    return [emotional_sentence(label_names[int(i)], rng) for i in labels]
