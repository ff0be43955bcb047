//! Model specs: the text of `--model` (and the `model` key of a TOML config), parsed into a
//! list of layer tokens that [`super::Model::build`] lays out for an input geometry.
//!
//! A spec is one of
//! * an MLP, `mlp:784-128-10` (or `784-128-10`): dense layers with ReLU between them; the first
//!   width is the input width, which must match the data;
//! * a named model: `cnn5` (NGM's cganet5), `resnet20` (widths 16/32/64, 3 EvoNorm basic blocks
//!   per stage), `lenet5`;
//! * a custom stack: layer tokens separated by commas, e.g.
//!   `conv3x32,evo,pool2,conv3x64,relu,gap,dense10`.
//!
//! Tokens of a custom stack:
//!
//! | token | layer |
//! |---|---|
//! | `conv<k>x<c>` + `s<n>`, `p<n>`, `b` | k×k convolution to c channels; stride n (1), zero padding n (k/2), `b`: with a bias (none) |
//! | `pool<w>` + `s<n>` | w×w max pooling, stride n (w) |
//! | `avgpool<w>` + `s<n>` | w×w average pooling, stride n (w) |
//! | `gap` | global average pooling (a window the size of the image) |
//! | `relu` | ReLU |
//! | `evo`, `evo<g>` | EvoNorm-S0 with g groups (8) |
//! | `gn`, `gn<g>` | GroupNorm with g groups (8) |
//! | `flatten` | nothing: a dense layer reads any image flattened (C·H·W) |
//! | `dense<n>`, `dense` | dense layer to n outputs (the dataset's classes), with a bias |
//! | `res<c>` + `s<n>` | residual basic block to c channels, stride n (1), EvoNorm (below) |
//!
//! A residual block is ResNet's basic block as the NGM code has it with EvoNorm:
//! `conv3×3(stride) → evo → conv3×3 → evo`, plus the shortcut, summed, with no ReLU (EvoNorm is
//! its own nonlinearity). The shortcut is the identity when the block keeps the channels and the
//! resolution, otherwise a 1×1 convolution with the block's stride followed by EvoNorm
//! (PyTorch's `downsample`).

use crate::error::{Error, Result};

/// The named models and the custom stacks they expand to.
pub const NAMED_MODELS: &[(&str, &str)] = &[
    (
        "cnn5",
        "conv3x32,evo,conv3x32,evo,pool2,conv3x64,evo,pool2,conv3x64,evo,pool2,dense",
    ),
    (
        "resnet20",
        "conv3x16,evo,res16,res16,res16,res32s2,res32,res32,res64s2,res64,res64,gap,dense",
    ),
    (
        "lenet5",
        "conv5x6p2b,relu,pool2,conv5x16p0b,relu,pool2,dense120,relu,dense84,relu,dense",
    ),
];

/// Default groups of `evo` and `gn` (the EvoNorm-S0: groups of C/8 channels).
pub const DEFAULT_GROUPS: usize = 8;

/// One parsed layer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// Convolution.
    Conv {
        /// Kernel side.
        kernel: usize,
        /// Output channels.
        channels: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        pad: usize,
        /// With a bias.
        bias: bool,
    },
    /// Max (`avg: false`) or average pooling; `window: None` is global average pooling.
    Pool {
        /// Average (true) or max.
        avg: bool,
        /// Window side (None: the whole image).
        window: Option<usize>,
        /// Stride (None: the window).
        stride: Option<usize>,
    },
    /// ReLU.
    Relu,
    /// EvoNorm-S0 (`evo: true`) or GroupNorm.
    Norm {
        /// EvoNorm-S0 rather than GroupNorm.
        evo: bool,
        /// Channel groups.
        groups: usize,
    },
    /// Dense layer (None: to the classes).
    Dense(Option<usize>),
    /// Residual basic block.
    Res {
        /// Output channels.
        channels: usize,
        /// Stride of the first convolution and the shortcut.
        stride: usize,
    },
}

/// A parsed model spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSpec {
    /// An MLP by its widths, input first.
    Mlp(Vec<usize>),
    /// A stack of layers; `name` is how it is shown (the named model, or the spec as written).
    Stack {
        /// Display name.
        name: String,
        /// The layer tokens.
        tokens: Vec<Token>,
    },
}

fn spec_error(spec: &str, reason: impl Into<String>) -> Error {
    Error::ModelSpec {
        spec: spec.into(),
        reason: reason.into(),
    }
}

/// Splits `s` into its leading decimal number and the rest (None without digits).
fn number(s: &str) -> Option<(usize, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    s[..end].parse().ok().map(|n| (n, &s[end..]))
}

/// Parses suffixes like `s2`, `p0`, `b` after a token's numbers; returns (letter, value) pairs.
fn suffixes(mut s: &str, allowed: &str) -> Option<Vec<(char, usize)>> {
    let mut out = Vec::new();
    while let Some(c) = s.chars().next() {
        if !allowed.contains(c) || out.iter().any(|&(k, _)| k == c) {
            return None;
        }
        s = &s[1..];
        if c == 'b' {
            out.push((c, 1));
            continue;
        }
        let (n, rest) = number(s)?;
        out.push((c, n));
        s = rest;
    }
    Some(out)
}

fn suffix(list: &[(char, usize)], c: char) -> Option<usize> {
    list.iter().find(|&&(k, _)| k == c).map(|&(_, v)| v)
}

/// Parses one token of a custom stack.
pub fn parse_token(tok: &str) -> Option<Token> {
    let t = tok.trim().to_ascii_lowercase();
    let positive = |n: usize| (n > 0).then_some(n);
    if let Some(rest) = t.strip_prefix("conv") {
        let (kernel, rest) = number(rest)?;
        let rest = rest.strip_prefix('x')?;
        let (channels, rest) = number(rest)?;
        let s = suffixes(rest, "spb")?;
        return Some(Token::Conv {
            kernel: positive(kernel)?,
            channels: positive(channels)?,
            stride: positive(suffix(&s, 's').unwrap_or(1))?,
            pad: suffix(&s, 'p').unwrap_or(kernel / 2),
            bias: suffix(&s, 'b').is_some(),
        });
    }
    let pool = |rest: &str, avg: bool| -> Option<Token> {
        let (window, rest) = number(rest)?;
        let s = suffixes(rest, "s")?;
        Some(Token::Pool {
            avg,
            window: Some(positive(window)?),
            stride: match suffix(&s, 's') {
                Some(n) => Some(positive(n)?),
                None => None,
            },
        })
    };
    if let Some(rest) = t.strip_prefix("avgpool") {
        return pool(rest, true);
    }
    if let Some(rest) = t.strip_prefix("pool") {
        return pool(rest, false);
    }
    if let Some(rest) = t.strip_prefix("res") {
        let (channels, rest) = number(rest)?;
        let s = suffixes(rest, "s")?;
        return Some(Token::Res {
            channels: positive(channels)?,
            stride: positive(suffix(&s, 's').unwrap_or(1))?,
        });
    }
    let groups = |rest: &str| -> Option<usize> {
        if rest.is_empty() {
            return Some(DEFAULT_GROUPS);
        }
        match number(rest)? {
            (g, "") => positive(g),
            _ => None,
        }
    };
    if let Some(rest) = t.strip_prefix("evo") {
        return Some(Token::Norm {
            evo: true,
            groups: groups(rest)?,
        });
    }
    if let Some(rest) = t.strip_prefix("gn") {
        return Some(Token::Norm {
            evo: false,
            groups: groups(rest)?,
        });
    }
    if let Some(rest) = t.strip_prefix("dense") {
        if rest.is_empty() {
            return Some(Token::Dense(None));
        }
        return match number(rest)? {
            (n, "") => Some(Token::Dense(Some(positive(n)?))),
            _ => None,
        };
    }
    match t.as_str() {
        "relu" => Some(Token::Relu),
        "gap" => Some(Token::Pool {
            avg: true,
            window: None,
            stride: None,
        }),
        _ => None,
    }
}

impl ModelSpec {
    /// Parses a spec (see the module docs).
    pub fn parse(spec: &str) -> Result<Self> {
        let s = spec.trim();
        if let Some(&(name, stack)) = NAMED_MODELS.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Self::parse_stack(stack, name);
        }
        if s.contains(',') || parse_token(s).is_some() {
            return Self::parse_stack(s, s);
        }
        let body = s.strip_prefix("mlp:").unwrap_or(s);
        let sizes: std::result::Result<Vec<usize>, _> =
            body.split('-').map(|w| w.trim().parse::<usize>()).collect();
        let names: Vec<&str> = NAMED_MODELS.iter().map(|(n, _)| *n).collect();
        let sizes = sizes.map_err(|_| {
            spec_error(
                spec,
                format!(
                    "expected widths separated by '-' (e.g. mlp:784-128-10), a named model ({}) \
                     or layers separated by ',' (e.g. conv3x32,evo,pool2,dense10)",
                    names.join(", ")
                ),
            )
        })?;
        if sizes.len() < 2 {
            return Err(spec_error(
                spec,
                "needs at least an input and an output width",
            ));
        }
        if sizes.contains(&0) {
            return Err(spec_error(spec, "layer widths must be positive"));
        }
        Ok(ModelSpec::Mlp(sizes))
    }

    fn parse_stack(stack: &str, name: &str) -> Result<Self> {
        let mut tokens = Vec::new();
        for tok in stack.split(',') {
            if tok.trim().eq_ignore_ascii_case("flatten") {
                continue;
            }
            let t = parse_token(tok).ok_or_else(|| {
                spec_error(
                    name,
                    format!(
                        "unknown layer '{}' (layers: conv<k>x<c>[s<n>][p<n>][b], pool<w>[s<n>], \
                         avgpool<w>[s<n>], gap, relu, evo[<g>], gn[<g>], flatten, dense[<n>], \
                         res<c>[s<n>])",
                        tok.trim()
                    ),
                )
            })?;
            tokens.push(t);
        }
        if tokens.is_empty() {
            return Err(spec_error(name, "no layers"));
        }
        Ok(ModelSpec::Stack {
            name: name.to_string(),
            tokens,
        })
    }

    /// The name the model is shown by (`mlp:…`, the named model, or the stack as written).
    pub fn name(&self) -> String {
        match self {
            ModelSpec::Mlp(sizes) => {
                let s: Vec<String> = sizes.iter().map(usize::to_string).collect();
                format!("mlp:{}", s.join("-"))
            }
            ModelSpec::Stack { name, .. } => name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_with_their_defaults() {
        let conv = |kernel, channels, stride, pad, bias| Token::Conv {
            kernel,
            channels,
            stride,
            pad,
            bias,
        };
        assert_eq!(parse_token("conv3x32"), Some(conv(3, 32, 1, 1, false)));
        assert_eq!(parse_token("conv5x6p2b"), Some(conv(5, 6, 1, 2, true)));
        assert_eq!(parse_token("Conv1x64s2p0"), Some(conv(1, 64, 2, 0, false)));
        assert_eq!(
            parse_token("pool3s2"),
            Some(Token::Pool {
                avg: false,
                window: Some(3),
                stride: Some(2)
            })
        );
        assert_eq!(
            parse_token("gap"),
            Some(Token::Pool {
                avg: true,
                window: None,
                stride: None
            })
        );
        assert_eq!(
            parse_token("evo"),
            Some(Token::Norm {
                evo: true,
                groups: 8
            })
        );
        assert_eq!(
            parse_token("gn2"),
            Some(Token::Norm {
                evo: false,
                groups: 2
            })
        );
        assert_eq!(parse_token("dense"), Some(Token::Dense(None)));
        assert_eq!(parse_token("dense10"), Some(Token::Dense(Some(10))));
        assert_eq!(
            parse_token("res32s2"),
            Some(Token::Res {
                channels: 32,
                stride: 2
            })
        );
        for bad in [
            "conv3",
            "conv3x",
            "conv0x3",
            "conv3x3s0",
            "conv3x3bb",
            "pool",
            "pool2x",
            "dense0",
            "evo0",
            "res",
            "relu2",
            "gn2x",
            "conv3x3q1",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn specs_parse_to_mlps_named_models_and_stacks() {
        assert_eq!(
            ModelSpec::parse("mlp:784-128-10").unwrap(),
            ModelSpec::Mlp(vec![784, 128, 10])
        );
        assert_eq!(ModelSpec::parse("5-3").unwrap(), ModelSpec::Mlp(vec![5, 3]));
        assert_eq!(ModelSpec::parse("CNN5").unwrap().name(), "cnn5");
        let s = ModelSpec::parse("conv3x8, evo, flatten, dense").unwrap();
        let ModelSpec::Stack { tokens, .. } = &s else {
            panic!("a stack")
        };
        assert_eq!(tokens.len(), 3);
        for bad in [
            "",
            "mlp:10",
            "mlp:10-0-2",
            "mlp:a-b",
            "784--10",
            "conv3x8,wat",
            ",",
        ] {
            assert!(
                matches!(ModelSpec::parse(bad), Err(Error::ModelSpec { .. })),
                "{bad}"
            );
        }
    }
}
