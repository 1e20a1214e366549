//! Vocabulary of the compositional task ([`Task::Compositional`](super::Task)): every
//! event is an (object, motion, sound) triple told as an English sentence, e.g.
//! "a disc falls with a click" or "two squares collide with a thud".
//!
//! - Objects: [`Object::Square`], [`Object::Disc`]; "two Xs collide" moves two bodies of
//!   that shape.
//! - Motions: slides to the left, slides to the right, falls, two collide.
//! - Sounds: click, thud (impact sounds, heard at the visual contact: the landing of a
//!   fall, the contact of a collision, the abrupt stop of a slide), whoosh (spans the
//!   motion) and scream (a harmonic tone with a pitch sweep and vibrato, 0.3-0.8 s,
//!   during the motion).
//!
//! The label list is [`LABELS`]: index 0 is [`BACKGROUND_SENTENCE`] ("nothing happens"),
//! then the 2 x 4 x 4 = 32 classes in the order object, motion, sound (see
//! [`label_index`]). Seen and novel scenes share these indices.
//!
//! [`NOVEL`] holds the six held-out combinations, never drawn in [`ClassSet::Seen`]
//! scenes and the only ones drawn in [`ClassSet::Novel`] scenes:
//!
//! | # | sentence |
//! |---|---|
//! | 1 | a square slides to the left with a click |
//! | 2 | a disc slides to the right with a thud |
//! | 3 | a disc falls with a scream |
//! | 4 | a square falls with a whoosh |
//! | 5 | two squares collide with a whoosh |
//! | 6 | two discs collide with a scream |
//!
//! Each (motion, sound) pair is held out for one object only, so every attribute value,
//! and every pair of attribute values, still occurs among the seen classes.
//!
//! Per-window moderation attributes are [`ATTRIBUTES`]; [`Scene::attributes_in`](super::Scene::attributes_in)
//! (super::Scene::attributes_in) documents how each is read off the plan.

use serde::{Deserialize, Serialize};

/// What moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Object {
    /// A filled square.
    Square,
    /// A filled disc.
    Disc,
}

/// How it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Motion {
    /// One body slides along the floor from right to left.
    SlideLeft,
    /// One body slides along the floor from left to right.
    SlideRight,
    /// One body falls onto the floor and bounces once.
    Fall,
    /// Two bodies run into each other.
    Collide,
}

/// What is heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sound {
    /// A short bright transient at the contact.
    Click,
    /// A low decaying knock at the contact.
    Thud,
    /// Band-limited noise swelling over the motion.
    Whoosh,
    /// A harmonic tone with a pitch sweep and vibrato during the motion.
    Scream,
}

/// The three attributes of one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parts {
    /// What moves.
    pub object: Object,
    /// How it moves.
    pub motion: Motion,
    /// What is heard.
    pub sound: Sound,
}

/// Which classes a compositional scene draws its events from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassSet {
    /// Every class except [`NOVEL`] (training and seen-class validation).
    #[default]
    Seen,
    /// Only the [`NOVEL`] classes (zero-shot evaluation).
    Novel,
    /// All 32 classes.
    All,
}

impl ClassSet {
    /// The name used on the command line and in `meta.json`: `seen`, `novel` or `all`.
    pub fn name(self) -> &'static str {
        match self {
            ClassSet::Seen => "seen",
            ClassSet::Novel => "novel",
            ClassSet::All => "all",
        }
    }

    /// Parses [`ClassSet::name`]; the error lists the valid names.
    ///
    /// # Errors
    /// [`Config`](crate::ErrorKind::Config) for a name other than `seen`, `novel` or `all`.
    pub fn parse(name: &str) -> crate::Result<ClassSet> {
        match name {
            "seen" => Ok(ClassSet::Seen),
            "novel" => Ok(ClassSet::Novel),
            "all" => Ok(ClassSet::All),
            _ => Err(crate::err!(
                Config,
                "unknown class set {name:?}; valid: seen, novel, all"
            )),
        }
    }

    /// Whether scenes of this set may contain `parts`.
    pub fn allows(self, parts: Parts) -> bool {
        match self {
            ClassSet::Seen => !is_novel(parts),
            ClassSet::Novel => is_novel(parts),
            ClassSet::All => true,
        }
    }

    /// The label indices (into [`LABELS`]) this set draws from, ascending.
    pub fn label_indices(self) -> Vec<usize> {
        classes()
            .into_iter()
            .filter(|&parts| self.allows(parts))
            .map(label_index)
            .collect()
    }
}

/// All objects, in label order.
pub const OBJECTS: [Object; 2] = [Object::Square, Object::Disc];
/// All motions, in label order.
pub const MOTIONS: [Motion; 4] = [
    Motion::SlideLeft,
    Motion::SlideRight,
    Motion::Fall,
    Motion::Collide,
];
/// All sounds, in label order.
pub const SOUNDS: [Sound; 4] = [Sound::Click, Sound::Thud, Sound::Whoosh, Sound::Scream];

/// The sentence of the background class (index 0 of [`LABELS`]).
pub const BACKGROUND_SENTENCE: &str = "nothing happens";

/// Every label of the compositional task: background, then the 32 classes in the order
/// of [`label_index`] (object, then motion, then sound).
pub const LABELS: [&str; 33] = [
    BACKGROUND_SENTENCE,
    "a square slides to the left with a click",
    "a square slides to the left with a thud",
    "a square slides to the left with a whoosh",
    "a square slides to the left with a scream",
    "a square slides to the right with a click",
    "a square slides to the right with a thud",
    "a square slides to the right with a whoosh",
    "a square slides to the right with a scream",
    "a square falls with a click",
    "a square falls with a thud",
    "a square falls with a whoosh",
    "a square falls with a scream",
    "two squares collide with a click",
    "two squares collide with a thud",
    "two squares collide with a whoosh",
    "two squares collide with a scream",
    "a disc slides to the left with a click",
    "a disc slides to the left with a thud",
    "a disc slides to the left with a whoosh",
    "a disc slides to the left with a scream",
    "a disc slides to the right with a click",
    "a disc slides to the right with a thud",
    "a disc slides to the right with a whoosh",
    "a disc slides to the right with a scream",
    "a disc falls with a click",
    "a disc falls with a thud",
    "a disc falls with a whoosh",
    "a disc falls with a scream",
    "two discs collide with a click",
    "two discs collide with a thud",
    "two discs collide with a whoosh",
    "two discs collide with a scream",
];

/// The held-out (novel) combinations; see the module docs for why these.
pub const NOVEL: [Parts; 6] = [
    Parts {
        object: Object::Square,
        motion: Motion::SlideLeft,
        sound: Sound::Click,
    },
    Parts {
        object: Object::Disc,
        motion: Motion::SlideRight,
        sound: Sound::Thud,
    },
    Parts {
        object: Object::Disc,
        motion: Motion::Fall,
        sound: Sound::Scream,
    },
    Parts {
        object: Object::Square,
        motion: Motion::Fall,
        sound: Sound::Whoosh,
    },
    Parts {
        object: Object::Square,
        motion: Motion::Collide,
        sound: Sound::Whoosh,
    },
    Parts {
        object: Object::Disc,
        motion: Motion::Collide,
        sound: Sound::Scream,
    },
];

/// Names of the per-window moderation attributes, in the order of
/// [`Scene::attributes_in`](super::Scene::attributes_in)(super::Scene::attributes_in).
pub const ATTRIBUTES: [&str; 6] = [
    "impact",
    "fast_motion",
    "falling_object",
    "scream_like",
    "crowd_noise",
    "out_of_sync",
];

/// Index of `impact` in [`ATTRIBUTES`]: a visual contact moment in the window.
pub const IMPACT: usize = 0;
/// Index of `fast_motion`: some body moving faster than
/// [`FAST_MOTION_WIDTHS_PER_S`] frame widths per second.
pub const FAST_MOTION: usize = 1;
/// Index of `falling_object`: a body falling (before its first landing).
pub const FALLING_OBJECT: usize = 2;
/// Index of `scream_like`: a scream sound audible.
pub const SCREAM_LIKE: usize = 3;
/// Index of `crowd_noise`: crowd babble audible.
pub const CROWD_NOISE: usize = 4;
/// Index of `out_of_sync`: an event whose sound comes late.
pub const OUT_OF_SYNC: usize = 5;

/// Speed, in frame widths per second, above which a body counts as `fast_motion`.
pub const FAST_MOTION_WIDTHS_PER_S: f64 = 0.6;

/// The parts of one label, all `None` for background (the `class_parts` entries of
/// the dump's `meta.json` and of the ground-truth JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelParts {
    /// What moves (`None` for background).
    pub object: Option<Object>,
    /// How it moves (`None` for background).
    pub motion: Option<Motion>,
    /// What is heard (`None` for background).
    pub sound: Option<Sound>,
}

/// One [`LabelParts`] per entry of [`LABELS`], in order.
pub fn label_parts() -> Vec<LabelParts> {
    (0..LABELS.len())
        .map(|index| {
            let parts = parts_of(index);
            LabelParts {
                object: parts.map(|p| p.object),
                motion: parts.map(|p| p.motion),
                sound: parts.map(|p| p.sound),
            }
        })
        .collect()
}

/// All 32 classes, in label order (class `i` has label index `i + 1`).
pub fn classes() -> Vec<Parts> {
    let mut all = Vec::with_capacity(32);
    for object in OBJECTS {
        for motion in MOTIONS {
            for sound in SOUNDS {
                all.push(Parts {
                    object,
                    motion,
                    sound,
                });
            }
        }
    }
    all
}

/// The held-out combinations ([`NOVEL`]).
pub fn novel() -> &'static [Parts] {
    &NOVEL
}

/// Whether `parts` is one of the held-out combinations.
pub fn is_novel(parts: Parts) -> bool {
    NOVEL.contains(&parts)
}

/// Label indices (into [`LABELS`]) of the held-out combinations, ascending.
pub fn novel_indices() -> Vec<usize> {
    ClassSet::Novel.label_indices()
}

/// Index of `parts` in [`LABELS`]: `1 + (object * 4 + motion) * 4 + sound`.
pub fn label_index(parts: Parts) -> usize {
    let object = OBJECTS.iter().position(|&o| o == parts.object).unwrap_or(0);
    let motion = MOTIONS.iter().position(|&m| m == parts.motion).unwrap_or(0);
    let sound = SOUNDS.iter().position(|&s| s == parts.sound).unwrap_or(0);
    1 + (object * MOTIONS.len() + motion) * SOUNDS.len() + sound
}

/// The parts of label `index`; `None` for background (0) and out-of-range indices.
pub fn parts_of(index: usize) -> Option<Parts> {
    let class = index.checked_sub(1)?;
    if class >= OBJECTS.len() * MOTIONS.len() * SOUNDS.len() {
        return None;
    }
    Some(Parts {
        object: OBJECTS[class / (MOTIONS.len() * SOUNDS.len())],
        motion: MOTIONS[(class / SOUNDS.len()) % MOTIONS.len()],
        sound: SOUNDS[class % SOUNDS.len()],
    })
}

/// The sentence of `parts` (an entry of [`LABELS`]).
pub fn sentence(parts: Parts) -> &'static str {
    LABELS[label_index(parts)]
}

/// The parts a sentence of [`LABELS`] describes; `None` for background and any other text.
pub fn parse(sentence: &str) -> Option<Parts> {
    LABELS
        .iter()
        .position(|&label| label == sentence)
        .and_then(parts_of)
}

/// Composes the sentence of `parts` word by word (the rule [`LABELS`] follows).
pub fn compose(parts: Parts) -> String {
    let noun = match parts.object {
        Object::Square => "square",
        Object::Disc => "disc",
    };
    let sound = match parts.sound {
        Sound::Click => "click",
        Sound::Thud => "thud",
        Sound::Whoosh => "whoosh",
        Sound::Scream => "scream",
    };
    match parts.motion {
        Motion::SlideLeft => format!("a {noun} slides to the left with a {sound}"),
        Motion::SlideRight => format!("a {noun} slides to the right with a {sound}"),
        Motion::Fall => format!("a {noun} falls with a {sound}"),
        Motion::Collide => format!("two {noun}s collide with a {sound}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_composition_rule_and_round_trip() {
        assert_eq!(LABELS[0], BACKGROUND_SENTENCE);
        assert_eq!(classes().len(), 32);
        for (i, parts) in classes().into_iter().enumerate() {
            assert_eq!(label_index(parts), i + 1);
            assert_eq!(parts_of(i + 1), Some(parts));
            assert_eq!(sentence(parts), compose(parts));
            assert_eq!(parse(sentence(parts)), Some(parts));
        }
        assert_eq!(parts_of(0), None);
        assert_eq!(parts_of(33), None);
        assert_eq!(parse(BACKGROUND_SENTENCE), None);
        assert_eq!(parse("a triangle falls with a click"), None);
    }

    #[test]
    fn held_out_classes_leave_every_value_and_pair_in_the_seen_classes() {
        let seen: Vec<Parts> = classes().into_iter().filter(|p| !is_novel(*p)).collect();
        assert_eq!(seen.len(), 32 - NOVEL.len());
        assert_eq!(novel_indices().len(), NOVEL.len());
        for object in OBJECTS {
            assert!(seen.iter().any(|p| p.object == object), "{object:?}");
        }
        for motion in MOTIONS {
            assert!(seen.iter().any(|p| p.motion == motion), "{motion:?}");
        }
        for sound in SOUNDS {
            assert!(seen.iter().any(|p| p.sound == sound), "{sound:?}");
        }
        for parts in NOVEL {
            assert!(seen
                .iter()
                .any(|p| p.object == parts.object && p.motion == parts.motion));
            assert!(seen
                .iter()
                .any(|p| p.object == parts.object && p.sound == parts.sound));
            assert!(seen
                .iter()
                .any(|p| p.motion == parts.motion && p.sound == parts.sound));
        }
        // No duplicates in the held-out list.
        for (i, a) in NOVEL.iter().enumerate() {
            assert!(!NOVEL[i + 1..].contains(a));
        }
    }

    #[test]
    fn class_sets_partition_the_classes() {
        let seen = ClassSet::Seen.label_indices();
        let novel = ClassSet::Novel.label_indices();
        let all = ClassSet::All.label_indices();
        assert_eq!(all, (1..=32).collect::<Vec<_>>());
        assert_eq!(seen.len() + novel.len(), 32);
        assert!(seen.iter().all(|i| !novel.contains(i)));
        for set in [ClassSet::Seen, ClassSet::Novel, ClassSet::All] {
            assert_eq!(ClassSet::parse(set.name()).unwrap(), set);
        }
        assert!(ClassSet::parse("unseen").is_err());
    }
}
