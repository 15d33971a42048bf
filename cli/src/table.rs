//! Tables as Linkerd's CLI prints them: names left-aligned, figures
//! right-aligned, columns three spaces apart.

pub(crate) struct Table {
    header: Vec<&'static str>,
    /// Which columns are figures (right-aligned).
    figures: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// The first `names` columns are names, the rest figures.
    pub(crate) fn new(header: Vec<&'static str>, names: usize) -> Self {
        let figures = (0..header.len()).map(|i| i >= names).collect();
        Self {
            header,
            figures,
            rows: Vec::new(),
        }
    }

    /// Only the columns at `figures` are figures.
    pub(crate) fn with_figures(header: Vec<&'static str>, figures: &[usize]) -> Self {
        let figures = (0..header.len()).map(|i| figures.contains(&i)).collect();
        Self {
            header,
            figures,
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("   ");
                }
                let pad = w - width(cell);
                if !self.figures[i] {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                } else {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_left_figures_right() {
        let mut t = Table::new(vec!["NAME", "MESHED", "SUCCESS"], 1);
        t.push(vec!["web".into(), "1/1".into(), "93.33%".into()]);
        t.push(vec!["vote-bot".into(), "1/1".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "NAME       MESHED   SUCCESS\n\
             web           1/1    93.33%\n\
             vote-bot      1/1         -\n"
        );
    }
}
