using System.Diagnostics;
using System.Text;

namespace InfluenceSharp.Diagnostics;

/// <summary>Times named stages and formats a table like Kronfluence's profiler (stage, mean
/// duration, calls, total, percentage of the command's wall time). It never prints: callers write <see cref="Table"/> where they want it.</summary>
public sealed class Profiler
{
    private readonly Stopwatch wall = Stopwatch.StartNew();
    private readonly Dictionary<string, (double Total, int Calls)> stages = new();
    private readonly List<string> order = new();

    public IDisposable Stage(string name) => new Timer(this, name);

    public T Time<T>(string name, Func<T> f)
    {
        using (Stage(name)) return f();
    }

    public void Time(string name, Action f)
    {
        using (Stage(name)) f();
    }

    public void Record(string name, double seconds)
    {
        if (!stages.TryGetValue(name, out var s)) { s = (0, 0); order.Add(name); }
        stages[name] = (s.Total + seconds, s.Calls + 1);
    }

    public IReadOnlyList<(string Name, double Total, int Calls)> Stages =>
        order.Select(n => (n, stages[n].Total, stages[n].Calls)).ToList();

    public double WallSeconds => wall.Elapsed.TotalSeconds;

    public string Table()
    {
        double total = Math.Max(WallSeconds, 1e-9);
        var sb = new StringBuilder();
        string sep = new('-', 110);
        sb.AppendLine(sep);
        sb.AppendLine($"|  {"Action",-34}|  {"Mean duration (s)",-18}|  {"Num calls",-10}|  {"Total time (s)",-16}|  {"Percentage %",-14}|");
        sb.AppendLine(sep);
        sb.AppendLine($"|  {"Total",-34}|  {"-",-18}|  {stages.Values.Sum(s => s.Calls),-10}|  {total,-16:G5}|  {"100 %",-14}|");
        sb.AppendLine(sep);
        foreach (var (name, tot, calls) in Stages.OrderByDescending(s => s.Total))
            sb.AppendLine($"|  {name,-34}|  {tot / calls,-18:G5}|  {calls,-10}|  {tot,-16:G5}|  {100 * tot / total,-14:G5}|");
        sb.AppendLine(sep);
        return sb.ToString();
    }

    private sealed class Timer : IDisposable
    {
        private readonly Profiler p; private readonly string name; private readonly Stopwatch sw = Stopwatch.StartNew();
        public Timer(Profiler p, string name) { this.p = p; this.name = name; }
        public void Dispose() => p.Record(name, sw.Elapsed.TotalSeconds);
    }
}
