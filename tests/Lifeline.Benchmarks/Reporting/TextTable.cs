using System.Text;

namespace Lifeline.Benchmarks.Reporting;

/// <summary>A plain-text table: left-aligned text columns, right-aligned numbers, widths fitted to the content.</summary>
internal sealed class TextTable(params string[] headers)
{
    private readonly List<string[]> _rows = [];

    public TextTable Add(params string[] cells)
    {
        if (cells.Length != headers.Length)
        {
            throw new ArgumentException($"Expected {headers.Length} cells, got {cells.Length}.", nameof(cells));
        }

        _rows.Add(cells);
        return this;
    }

    public void WriteTo(TextWriter writer)
    {
        var widths = headers.Select((h, i) => _rows.Select(r => r[i].Length).Append(h.Length).Max()).ToArray();
        var numeric = headers.Select((_, i) => _rows.Count > 0 && _rows.All(r => IsNumeric(r[i]))).ToArray();
        writer.WriteLine(Line(headers));
        writer.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in _rows)
        {
            writer.WriteLine(Line(row));
        }

        string Line(string[] cells)
        {
            var line = new StringBuilder();
            for (var i = 0; i < cells.Length; i++)
            {
                var cell = numeric[i] ? cells[i].PadLeft(widths[i]) : cells[i].PadRight(widths[i]);
                line.Append(i == 0 ? "" : "  ").Append(cell);
            }

            return line.ToString().TrimEnd();
        }
    }

    private static bool IsNumeric(string cell) =>
        cell.Length > 0 && cell.All(c => char.IsDigit(c) || c is '.' or ',' or '/' or ' ' or '-');
}
