//! The command line's charts (SVG, with plotters): the training curve, the accuracy matrix of
//! continual learning, the robot's returns. The library writes the numbers; drawing them is
//! the binary's.

use eqprop::metrics::EpochRecord;
use plotters::prelude::*;
use std::path::Path;

/// A chart that cannot be drawn or written (plotters' error, which says which step failed).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PlotError(#[from] DrawingAreaErrorKind<std::io::Error>);

/// Draws the chart's legend at `position`, on a light box with a black border.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Draws train and test error (%) against epochs as an SVG.
pub fn plot_curve(path: &Path, records: &[EpochRecord], title: &str) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = records.iter().map(|r| r.epoch).max().unwrap_or(1).max(1);
    // Scaled to the test error (the train error of the first epochs may run off the top), so the
    // last points, where runs differ, stay readable.
    let top = records.iter().map(|r| r.test_error).fold(1.0, f64::max) * 1.3;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0usize..last, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("error (%)")
        .draw()?;
    let series = [
        (
            "train",
            RED,
            records
                .iter()
                .map(|r| (r.epoch, r.train_error))
                .collect::<Vec<_>>(),
        ),
        (
            "test",
            BLUE,
            records.iter().map(|r| (r.epoch, r.test_error)).collect(),
        ),
    ];
    for (name, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// Draws an accuracy matrix (rows: after each training stage, columns: on each task, values in
/// percent) as a heat map SVG with the value in every cell.
pub fn plot_accuracy_matrix(
    path: &Path,
    accuracy: &[Vec<f64>],
    tasks: &[String],
    title: &str,
) -> Result<(), PlotError> {
    const CELL: i32 = 72;
    const LEFT: i32 = 110;
    const TOP: i32 = 84;
    let (cols, rows) = (tasks.len() as i32, accuracy.len() as i32);
    let size = (
        (LEFT + cols * CELL + 20) as u32,
        (TOP + rows * CELL + 50) as u32,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let text = |size: i32| ("sans-serif", size).into_font();
    let centred = |size: i32| {
        text(size)
            .into_text_style(&root)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ))
    };
    root.draw(&Text::new(title, (size.0 as i32 / 2, 16), centred(18)))?;
    root.draw(&Text::new(
        "test accuracy (%) on task",
        (LEFT + cols * CELL / 2, TOP - 42),
        centred(14),
    ))?;
    for (j, name) in tasks.iter().enumerate() {
        let x = LEFT + j as i32 * CELL + CELL / 2;
        root.draw(&Text::new(name.as_str(), (x, TOP - 14), centred(14)))?;
    }
    for (t, row) in accuracy.iter().enumerate() {
        let y = TOP + t as i32 * CELL;
        let stage = if rows == 1 {
            "joint".to_string()
        } else {
            format!("after {}", tasks[t])
        };
        root.draw(&Text::new(stage, (LEFT / 2, y + CELL / 2), centred(14)))?;
        for (j, &a) in row.iter().enumerate() {
            let x = LEFT + j as i32 * CELL;
            let shade = (a / 100.0).clamp(0.0, 1.0);
            // White (0%) to deep green (100%).
            let colour = RGBColor(
                (255.0 * (1.0 - 0.85 * shade)) as u8,
                (255.0 * (1.0 - 0.45 * shade)) as u8,
                (255.0 * (1.0 - 0.75 * shade)) as u8,
            );
            root.draw(&Rectangle::new(
                [(x + 1, y + 1), (x + CELL - 1, y + CELL - 1)],
                colour.filled(),
            ))?;
            let ink = if shade > 0.6 { WHITE } else { BLACK };
            root.draw(&Text::new(
                format!("{a:.1}"),
                (x + CELL / 2, y + CELL / 2),
                centred(16).color(&ink),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Draws episode returns against environment steps as an SVG: the learning episodes as a line
/// at the step count where each ended, the evaluation episodes as dots (at the learning steps
/// they followed).
pub fn plot_returns(
    path: &Path,
    learning: &[(usize, f64)],
    evaluation: &[(usize, f64)],
    title: &str,
) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let all = || learning.iter().chain(evaluation);
    let last = all().map(|p| p.0).max().unwrap_or(1).max(1) * 21 / 20 + 1;
    let lo = all().map(|p| p.1).fold(0.0, f64::min);
    let hi = all().map(|p| p.1).fold(0.0, f64::max);
    let pad = 0.05 * (hi - lo).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..last, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("environment steps")
        .y_desc("episode return")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            learning.iter().copied(),
            RED.stroke_width(2),
        ))?
        .label("learning (online)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart.draw_series(learning.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
    chart
        .draw_series(evaluation.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?
        .label("evaluation (learning frozen)")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}

/// The colours of the series of one chart, in order.
const SERIES: [RGBColor; 4] = [RED, BLUE, GREEN, MAGENTA];

/// Draws each component's one-step error against learning steps as an SVG (log scale): the
/// robot learning its physics.
pub fn plot_component_errors(
    path: &Path,
    names: &[&str],
    curves: &[Vec<(usize, f64)>],
    title: &str,
) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let points = || curves.iter().flatten().filter(|p| p.1 > 0.0);
    let last = points().map(|p| p.0).max().unwrap_or(1).max(1);
    let lo = points()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(0.01)
        * 0.8;
    let hi = points().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.25;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..last, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("learning steps (environment steps)")
        .y_desc("one-step error / std of change")
        .draw()?;
    for ((name, curve), colour) in names.iter().zip(curves).zip(SERIES.iter().cycle()) {
        let style = colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                curve.iter().copied().filter(|p| p.1 > 0.0),
                style,
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .draw_series(LineSeries::new(
            [(0, 0.05), (last, 0.05)],
            BLACK.mix(0.5).stroke_width(1),
        ))?
        .label("0.05")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}

/// Draws the real and the imagined observations of a rollout, a panel per component, as an
/// SVG.
pub fn plot_rollout(
    path: &Path,
    names: &[&str],
    real: &[Vec<f32>],
    imagined: &[Vec<f32>],
    title: &str,
) -> Result<(), PlotError> {
    let cols = names.len().min(2);
    let rows = names.len().div_ceil(cols.max(1));
    let root =
        SVGBackend::new(path, (360 * cols as u32, 40 + 240 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let steps = real.len().max(2) - 1;
    for (j, (panel, name)) in root
        .split_evenly((rows, cols))
        .iter()
        .zip(names)
        .enumerate()
    {
        let values = || real.iter().chain(imagined).map(|o| f64::from(o[j]));
        let lo = values().fold(f64::INFINITY, f64::min);
        let hi = values().fold(f64::NEG_INFINITY, f64::max);
        let pad = 0.08 * (hi - lo).max(1e-3);
        let mut chart = ChartBuilder::on(panel)
            .caption(*name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0usize..steps, (lo - pad)..(hi + pad))?;
        chart.configure_mesh().x_desc("step").draw()?;
        let line = |path: &[Vec<f32>]| -> Vec<(usize, f64)> {
            path.iter()
                .enumerate()
                .map(|(t, o)| (t, f64::from(o[j])))
                .collect()
        };
        chart
            .draw_series(LineSeries::new(line(real), BLACK.stroke_width(2)))?
            .label("real")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(
                line(imagined),
                6,
                4,
                RED.stroke_width(2),
            ))?
            .label("imagined")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        if j == 0 {
            legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
    }
    root.present()?;
    Ok(())
}

/// Draws the life of the agent as an SVG: above, the share of learning steps that passed the
/// surprise gate; below, the one-step error of the new transitions before learning (log scale);
/// both over windows of learning steps, the world switches marked by grey lines.
pub fn plot_life(
    path: &Path,
    timeline: &[(usize, f64, f64)],
    switches: &[usize],
    title: &str,
) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (760, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root
        .titled(title, ("sans-serif", 20))?
        .split_vertically(250);
    let last = timeline.last().map_or(1, |p| p.0).max(1);
    let mark = |switch: usize, lo: f64, hi: f64| {
        PathElement::new(
            vec![(switch, lo), (switch, hi)],
            BLACK.mix(0.5).stroke_width(1),
        )
    };
    let mut share = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..last, 0.0..1.05)?;
    share.configure_mesh().y_desc("share learned").draw()?;
    share.draw_series(switches.iter().skip(1).map(|&s| mark(s, 0.0, 1.05)))?;
    share.draw_series(LineSeries::new(
        timeline.iter().map(|p| (p.0, p.1)),
        SERIES[0].stroke_width(2),
    ))?;
    let errors = || timeline.iter().filter(|p| p.2 > 0.0);
    let lo = errors()
        .map(|p| p.2)
        .fold(f64::INFINITY, f64::min)
        .min(0.01)
        * 0.8;
    let hi = errors().map(|p| p.2).fold(0.0, f64::max).max(0.1) * 1.25;
    let mut error = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..last, (lo..hi).log_scale())?;
    error
        .configure_mesh()
        .x_desc("learning steps (grey lines: the world changes)")
        .y_desc("one-step error / std of change")
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()?;
    error.draw_series(switches.iter().skip(1).map(|&s| mark(s, lo, hi)))?;
    error.draw_series(LineSeries::new(
        errors().map(|p| (p.0, p.2)),
        SERIES[1].stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

/// Draws the error matrix of a life as an SVG: a row per stage learned, a column per world
/// tested, each cell the one-step error and, below it, the mean length (CartPole) or return
/// (Pendulum); green where the error is low, red where it is high (log scale).
pub fn plot_life_matrix(
    path: &Path,
    outcome: &eqprop::agent::life::LifeOutcome,
    title: &str,
) -> Result<(), PlotError> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    const CELL_W: i32 = 150;
    const CELL_H: i32 = 64;
    const LEFT: i32 = 120;
    const TOP: i32 = 84;
    let (cols, rows) = (outcome.worlds.len() as i32, outcome.stages.len() as i32);
    let size = (
        (LEFT + cols * CELL_W + 20) as u32,
        (TOP + rows * CELL_H + 20) as u32,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let centred = |size: i32| {
        ("sans-serif", size)
            .into_font()
            .into_text_style(&root)
            .pos(Pos::new(HPos::Center, VPos::Center))
    };
    root.draw(&Text::new(title, (size.0 as i32 / 2, 16), centred(16)))?;
    root.draw(&Text::new(
        "world tested: one-step error / std of change, and control",
        (LEFT + cols * CELL_W / 2, TOP - 48),
        centred(13),
    ))?;
    for (w, physics) in outcome.worlds.iter().enumerate() {
        let x = LEFT + w as i32 * CELL_W + CELL_W / 2;
        let name = format!("{}: {}", w + 1, physics.spec());
        root.draw(&Text::new(name, (x, TOP - 16), centred(12)))?;
    }
    let cartpole = matches!(outcome.worlds[0], eqprop::env::Physics::CartPole(_));
    for (s, learned) in outcome.stages.iter().enumerate() {
        let y = TOP + s as i32 * CELL_H;
        let names: Vec<String> = learned.iter().map(|w| (w + 1).to_string()).collect();
        let label = format!("after world {}", names.join("+"));
        root.draw(&Text::new(label, (LEFT / 2, y + CELL_H / 2), centred(13)))?;
        for w in 0..outcome.worlds.len() {
            let Some(t) = outcome.test(s, w) else {
                continue;
            };
            let x = LEFT + w as i32 * CELL_W;
            // 0.01 green to 1 and above red, log scale.
            let bad = ((t.error.max(1e-6).log10() + 2.0) / 2.0).clamp(0.0, 1.0);
            let colour = RGBColor(
                (150.0 + 105.0 * bad) as u8,
                (230.0 - 110.0 * bad) as u8,
                (150.0 - 30.0 * bad) as u8,
            );
            root.draw(&Rectangle::new(
                [(x + 1, y + 1), (x + CELL_W - 1, y + CELL_H - 1)],
                colour.filled(),
            ))?;
            let control = if cartpole {
                format!("length {:.1}", t.mean_length)
            } else {
                format!("return {:.1}", t.mean_return)
            };
            root.draw(&Text::new(
                format!("{:.4}", t.error),
                (x + CELL_W / 2, y + CELL_H / 2 - 10),
                centred(15),
            ))?;
            root.draw(&Text::new(
                control,
                (x + CELL_W / 2, y + CELL_H / 2 + 12),
                centred(12),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}
