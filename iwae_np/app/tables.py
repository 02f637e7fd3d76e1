"""The plain-text tables the demo and the command line print, one function per table.

Each takes the rows or dict an experiment returns (``experiments``) and gives the text to print;
``format_table`` is the generic table they are built from.
"""


def format_table(rows, columns):
    """Plain-text table. columns: [(key, header, format)]; a value None prints as "n/a"."""
    header = " | ".join(h for _, h, _ in columns)
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            " | ".join(
                ("n/a" if row[key] is None else format(row[key], fmt)).rjust(len(h))
                for key, h, fmt in columns
            )
        )
    return "\n".join(lines)


def active_units_text(layer_units):
    """Active units per stochastic layer, each over its own layer's size.

    layer_units: [(count, size)], bottom layer first (``experiments.layer_active_units``).
    One layer: "7/10"; two: "h1 3/8, h2 1/4" (Burda et al.'s names for the layers)."""
    if len(layer_units) == 1:
        count, size = layer_units[0]
        return f"{count}/{size}"
    return ", ".join(
        f"h{layer + 1} {count}/{size}" for layer, (count, size) in enumerate(layer_units)
    )


def family_table(rows, k_eval):
    """VAE vs IWAEs (``experiments.evaluate_family``'s rows): test log p(x) with its standard
    error, the paired difference from the first model, test ELBO, active units per layer, and
    training seconds."""
    rows = [
        dict(
            row,
            log_px_text=f"{row['log_px']:.2f} ± {row['log_px_se']:.2f}",
            vs_first_text=f"{row['vs_first']:+.2f} ± {row['vs_first_se']:.2f}",
            active_units_text=active_units_text(row["layer_units"]),
        )
        for row in rows
    ]
    return format_table(
        rows,
        [
            ("model", "model      ", ""),
            ("log_px_text", f"test log p(x), k={k_eval}", ""),
            ("vs_first_text", "vs VAE (paired)", ""),
            ("elbo", "test ELBO", ".2f"),
            ("active_units_text", "active units", ""),
            ("train_seconds", "train s", ".1f"),
        ],
    )


def classic_vs_amortized_table(comparison):
    """Classic VI against the encoder (``experiments.classic_vs_amortized``'s dict): for the
    encoder, classic VI until it matches the encoder, and classic VI to convergence, the steps,
    the mean ELBO and the milliseconds per point; then how many points converged, and the gap."""
    match = comparison["classic_seconds_to_match"]
    points = comparison["points"]
    table = format_table(
        [
            {
                "method": "amortized (encoder)",
                "steps": "1 pass",
                "elbo": comparison["encoder_elbo"],
                "ms": 1e3 * comparison["encoder_seconds_per_point"],
            },
            {
                "method": "classic VI, until it matches the encoder",
                "steps": None if match is None else str(comparison["classic_steps_to_match"]),
                "elbo": None if match is None else comparison["encoder_elbo"],
                "ms": None if match is None else 1e3 * match,
            },
            {
                "method": "classic VI, to convergence",
                "steps": str(comparison["classic_steps"]),
                "elbo": comparison["classic_elbo"],
                "ms": 1e3 * comparison["classic_seconds_per_point"],
            },
        ],
        [
            ("method", "method" + " " * 34, ""),
            ("steps", " steps", ""),
            ("elbo", "mean ELBO", ".2f"),
            ("ms", "ms per point", ".4f"),
        ],
    )
    return (
        f"{table}\nclassic VI: {comparison['classic_converged']} of {points} points converged "
        f"({comparison['classic_criterion']})\n"
        f"gap ELBO[classic] − ELBO[encoder]: {comparison['gap']:+.2f} nats per point"
    )


def comparison_lines(result):
    """``compare``'s result dict, one "key: value" line each (the per-point arrays left out)."""
    return "\n".join(f"{key:>28}: {value}" for key, value in result.items() if key != "per_point")


def gaps_table(rows):
    """Cremer et al.'s gaps (``experiments.toy_gaps`` and ``trained_model_gaps`` rows), with the
    share of points where classic VI's q* converged."""
    return format_table(
        rows,
        [
            ("toy", "model" + " " * 28, ""),
            ("log_px", "log p(x)", ".3f"),
            ("local_elbo", "ELBO[q*]", ".3f"),
            ("encoder_elbo", "ELBO[encoder]", ".3f"),
            ("approximation_gap", "approximation gap", ".3f"),
            ("amortization_gap", "amortization gap", ".3f"),
            ("converged", "q* converged", ".0%"),
        ],
    )
