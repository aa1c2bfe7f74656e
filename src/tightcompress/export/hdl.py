"""Synthesizable Verilog-2005 for the exported layers, and one testbench per layer.

`export --hdl` writes, next to the hex files of `tightcompress.export.rtl`:

    hdl/tc_pe.v           the word PE: weight and lane-index registers, G:1 input multiplexer, int8 x int8
                          multiply-accumulate into int32 (wrapping), the activation bus passed right
    hdl/tc_pe_subword.v   the subword PE: 4-bit weight, shift bit (x16 for a high subword), 8 x 4 multiplier
    hdl/tc_delay.v        a register chain (the skew and deskew)
    hdl/tc_array.v        the R x C weight-stationary array: PEs, input skew, output deskew
    hdl/tc_feeder.v       per array row, the input features of its group's lanes; gathers them from the
                          input vector in flight onto the row's G-lane bus
    LAYER/tc_layer_tb.v   the layer's testbench (behavioural): `$readmemh` of the layer's hex files, the
                          pass and fold plan worked out from them, x streamed, y compared, one line out

The modules are fixed texts, parameterised (`$clog2` widths); the testbench is generated per layer with
the layer's sizes as `localparam`s and nothing else: which tiles share a pass, the pass heights, the
weights, lanes, features and output columns all come from the hex files at simulation time, so a
corrupted file changes what the simulation computes. The testbench prints one line a script parses:

    TB layer=NAME result=PASS matched=M vectors=M cycles=C passes=P folds=F timing=ok

`cycles` counts the array's cycles from the first weight load to the cycle of the last multiply-accumulate
(R load cycles and M + R + C - 2 stream cycles per fold, no gap between folds); `timing=ok` says every
fold's last output left the array exactly one cycle after its stream phase, i.e. the stream phase is as
long as the array's latency and no shorter. `tightcompress verify DIR` runs them (`export.verify`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

MODULES = ("tc_delay.v", "tc_pe.v", "tc_pe_subword.v", "tc_array.v", "tc_feeder.v")
HDL_FOLDER = "hdl"
TESTBENCH = "tc_layer_tb.v"
TB_PREFIX = "TB "


def module_text(name: str) -> str:
    """The text of one of the shared Verilog modules (`MODULES`)."""
    return resources.files("tightcompress.export").joinpath("verilog", name).read_text()


def write_modules(folder: Path) -> list[str]:
    """Write the shared modules into `folder/hdl`; their paths relative to `folder`."""
    (folder / HDL_FOLDER).mkdir(exist_ok=True)
    for name in MODULES:
        (folder / HDL_FOLDER / name).write_text(module_text(name))
    return [f"{HDL_FOLDER}/{name}" for name in MODULES]


def _bits(value: int) -> int:
    return max(1, int(value).bit_length())


def testbench(entry: dict[str, Any], array: tuple[int, int]) -> str:
    """The Verilog testbench of one manifest layer entry on an `R x C` array."""
    rows, cols = array
    f = entry["fields"]
    subword = 1 if f["shift_bits"] else 0
    tiles = entry["tiles"]
    total_rows = sum(t["rows"] for t in tiles)
    K, N, tile, n_tiles, n_groups = entry["K"], entry["N"], entry["tile"], entry["n_tiles"], entry["n_groups"]
    m = entry["vectors"]["m"]
    reads = []
    start = 0
    for t, spec in enumerate(tiles):
        files = spec["files"]
        if spec["rows"]:
            end = start + spec["rows"] - 1
            reads.append(f'        $readmemh("{files["weights"]}", w_mem, {start}, {end});')
            reads.append(f'        $readmemh("{files["lanes"]}", l_mem, {start}, {end});')
            if subword:
                reads.append(f'        $readmemh("{files["shifts"]}", s_mem, {start}, {end});')
        start += spec["rows"]
        reads.append(
            f'        $readmemh("{files["heights"]}", h_mem, {t * n_groups}, {(t + 1) * n_groups - 1});'
        )
        reads.append(f'        $readmemh("{files["feeder"]}", p_mem, {t * K}, {(t + 1) * K - 1});')
        reads.append(f'        $readmemh("{files["columns"]}", c_mem, {t * tile}, {(t + 1) * tile - 1});')
    return _TESTBENCH.format(
        name=entry["folder"],
        method=entry["method"],
        K=K,
        N=N,
        G=entry["group"],
        rows=rows,
        cols=cols,
        lanes=entry["group"],
        subword=subword,
        w_bits=f["weight_bits"],
        lane_bits=f["lane_bits"],
        features=entry["input_features"],
        tile=tile,
        n_tiles=n_tiles,
        n_groups=n_groups,
        m=m,
        total_rows=max(1, total_rows),
        height_bits=f["height_bits"],
        feeder_bits=f["feeder_bits"],
        column_bits=f["column_bits"],
        group_bits=_bits(K),
        groups=entry["groups"],
        x=entry["vectors"]["x"],
        y=entry["vectors"]["y"],
        reads="\n".join(reads),
    )


_TESTBENCH = """\
// tc_layer_tb: testbench of layer {name} ({method}, K = {K} x N = {N}, G = {G}) on a {rows} x {cols} array.
//
// Loads the layer's hex files with $readmemh and plans the passes from them as the cycle model does:
// tiles narrower than the array share a pass side by side when they read their inputs in the same order
// (the pass then has, per group, the tallest of their group heights, shorter groups padded with zero
// weights); a tile wider than the array takes one pass per COLS of its used columns (in order, the
// unused ones skipped); a pass of H physical
// rows runs in ceil(H / ROWS) row folds. Each fold loads ROWS weight rows (last row first: they shift
// down), then streams the M test vectors through tc_feeder and tc_array. The output buffer adds the folds'
// partial sums (int32, wrapping) and writes each pass's columns to their output columns; y is compared with
// y.hex. One line out:
//   TB layer={name} result=PASS|FAIL matched=V vectors={m} cycles=C passes=P folds=F timing=ok|bad
// cycles: from the first weight load to the cycle of the last multiply-accumulate; the output buffer takes
// the last fold's results one cycle later, overlapping the next fold's (or layer's) first load cycle.
module tc_layer_tb;
    localparam ROWS = {rows};
    localparam COLS = {cols};
    localparam LANES = {lanes};
    localparam SUBWORD = {subword};
    localparam A_BITS = 8;
    localparam W_BITS = {w_bits};
    localparam ACC_BITS = 32;
    localparam LANE_BITS = {lane_bits};
    localparam K = {K};                 // rows of the packed matrix (subword layers: 2 x FEATURES)
    localparam FEATURES = {features};   // input features of one vector
    localparam FEAT_BITS = (FEATURES > 1) ? $clog2(FEATURES) : 1;
    localparam N = {N};
    localparam TILE = {tile};
    localparam N_TILES = {n_tiles};
    localparam N_GROUPS = {n_groups};
    localparam M = {m};
    localparam TOTAL_ROWS = {total_rows};
    localparam HEIGHT_BITS = {height_bits};
    localparam FEEDER_BITS = {feeder_bits};
    localparam COLUMN_BITS = {column_bits};
    localparam GROUP_BITS = {group_bits};
    localparam [COLUMN_BITS-1:0] UNUSED = {{COLUMN_BITS{{1'b1}}}};

    // ------------------------------------------------------------------ the layer's files
    reg [TILE*W_BITS-1:0]    w_mem [0:TOTAL_ROWS-1];
    reg [TILE*LANE_BITS-1:0] l_mem [0:TOTAL_ROWS-1];
    reg [TILE-1:0]           s_mem [0:TOTAL_ROWS-1];
    reg [HEIGHT_BITS-1:0]    h_mem [0:N_TILES*N_GROUPS-1];
    reg [FEEDER_BITS-1:0]    p_mem [0:N_TILES*K-1];
    reg [COLUMN_BITS-1:0]    c_mem [0:N_TILES*TILE-1];
    reg [GROUP_BITS-1:0]     g_mem [0:N_GROUPS];
    reg [A_BITS-1:0]         x_mem [0:M*FEATURES-1];
    reg [ACC_BITS-1:0]       y_mem [0:M*N-1];

    // ------------------------------------------------------------------ the device under test
    reg clk = 1'b0;
    reg rst = 1'b1;
    reg load = 1'b0;
    reg x_valid = 1'b0;
    reg [COLS*W_BITS-1:0]      w_row = 0;
    reg [COLS*LANE_BITS-1:0]   lane_row = 0;
    reg [COLS-1:0]             shift_row = 0;
    reg [LANES*FEAT_BITS-1:0]  feature_in = 0;
    reg [LANES-1:0]            lane_on_in = 0;
    reg [FEATURES*A_BITS-1:0]  x_vec = 0;
    reg [FEATURES*A_BITS-1:0]  x_next = 0;
    wire [ROWS*LANES*A_BITS-1:0] a_rows;
    wire                       a_valid;
    wire [COLS*ACC_BITS-1:0]   y_row;
    wire                       y_valid;

    tc_feeder #(
        .ROWS(ROWS), .LANES(LANES), .A_BITS(A_BITS), .FEATURES(FEATURES), .FEAT_BITS(FEAT_BITS)
    ) feeder (
        .clk(clk), .load(load), .feature_in(feature_in), .lane_on_in(lane_on_in),
        .x_vec(x_vec), .x_valid(x_valid), .a_rows(a_rows), .a_valid(a_valid)
    );
    tc_array #(
        .ROWS(ROWS), .COLS(COLS), .LANES(LANES), .A_BITS(A_BITS), .W_BITS(W_BITS),
        .ACC_BITS(ACC_BITS), .SUBWORD(SUBWORD), .LANE_BITS(LANE_BITS)
    ) array (
        .clk(clk), .rst(rst), .load(load), .w_row(w_row), .lane_row(lane_row), .shift_row(shift_row),
        .a_rows(a_rows), .a_valid(a_valid), .y_row(y_row), .y_valid(y_valid)
    );
    always #5 clk = ~clk;

    // ------------------------------------------------------------------ the current pass
    reg [COLS*W_BITS-1:0]     pw  [0:TOTAL_ROWS-1];  // weight row words of the pass
    reg [COLS*LANE_BITS-1:0]  pl  [0:TOTAL_ROWS-1];  // lane indices
    reg [COLS-1:0]            ps  [0:TOTAL_ROWS-1];  // shift bits
    reg [LANES*FEAT_BITS-1:0] pf  [0:TOTAL_ROWS-1];  // input feature of each lane of the row's group
    reg [LANES-1:0]           pon [0:TOTAL_ROWS-1];  // lane in use
    reg [COLUMN_BITS-1:0]     pass_map [0:COLS-1];   // output column of each array column
    integer tile_start [0:N_TILES];                   // first row of each tile in w_mem
    integer group_row  [0:N_TILES*N_GROUPS-1];       // first row of each group of each tile
    integer live_col   [0:TILE-1];                   // used columns of a tile wider than the array
    integer first, members, cstart, live, H, folds_in_pass;

    // ------------------------------------------------------------------ the output buffer
    reg [ACC_BITS-1:0]    y_rtl  [0:M*N-1];
    reg [ACC_BITS-1:0]    acc    [0:M*COLS-1];
    reg [COLUMN_BITS-1:0] colmap [0:COLS-1];  // pass_map of the fold being collected
    reg collect_first, collect_last;
    reg [ACC_BITS-1:0] sum;
    integer out_count, collected, cycle_idx, stream_last, timing_ok, oc;

    always @(posedge clk) begin
        if (y_valid) begin
            for (oc = 0; oc < COLS; oc = oc + 1) begin
                sum = y_row[oc*ACC_BITS +: ACC_BITS];
                if (!collect_first)
                    sum = sum + acc[out_count*COLS + oc];  // 32-bit addition: wraps
                acc[out_count*COLS + oc] = sum;
                if (collect_last && colmap[oc] != UNUSED)
                    y_rtl[out_count*N + colmap[oc]] = sum;
            end
            if (out_count == M - 1) begin
                if (cycle_idx != stream_last + 1)
                    timing_ok = 0;  // the fold's last output did not leave right after its stream phase
                out_count = 0;
                collected = collected + 1;
            end else begin
                out_count = out_count + 1;
            end
        end
    end

    // ------------------------------------------------------------------ plan and run
    integer busy, passes, folds, t, i, j, g, c, cc, tc, row, lane, f, s, k, same, hmax, m, n;
    integer matched, good, shown;

    task array_column;  // array column cc of the pass -> member j and tile column tc
        begin
            if (TILE > COLS) begin  // the (cstart + cc)-th used column of the tile
                j = 0;
                tc = (cstart + cc < live) ? live_col[cstart + cc] : TILE;
            end else begin
                j = cc / TILE;
                tc = cc % TILE;
            end
        end
    endtask

    task build_pass;  // pw, pl, ps, pf, pon, pass_map and H of tiles first .. first+members-1
        begin
            H = 0;
            for (g = 0; g < N_GROUPS; g = g + 1) begin
                hmax = 0;
                for (j = 0; j < members; j = j + 1)
                    if (h_mem[(first+j)*N_GROUPS + g] > hmax)
                        hmax = h_mem[(first+j)*N_GROUPS + g];
                for (i = 0; i < hmax; i = i + 1) begin
                    pw[H] = 0;
                    pl[H] = 0;
                    ps[H] = 0;
                    for (cc = 0; cc < COLS; cc = cc + 1) begin
                        array_column;
                        if (j < members && tc < TILE && i < h_mem[(first+j)*N_GROUPS + g]) begin
                            row = group_row[(first+j)*N_GROUPS + g] + i;
                            pw[H][cc*W_BITS +: W_BITS] = w_mem[row][tc*W_BITS +: W_BITS];
                            pl[H][cc*LANE_BITS +: LANE_BITS] = l_mem[row][tc*LANE_BITS +: LANE_BITS];
                            ps[H][cc] = SUBWORD ? s_mem[row][tc] : 1'b0;
                        end
                    end
                    for (lane = 0; lane < LANES; lane = lane + 1) begin
                        if (lane < g_mem[g+1] - g_mem[g]) begin
                            pf[H][lane*FEAT_BITS +: FEAT_BITS] = p_mem[first*K + g_mem[g] + lane] >> SUBWORD;
                            pon[H][lane] = 1'b1;
                        end else begin
                            pf[H][lane*FEAT_BITS +: FEAT_BITS] = 0;
                            pon[H][lane] = 1'b0;
                        end
                    end
                    H = H + 1;
                end
            end
            for (cc = 0; cc < COLS; cc = cc + 1) begin
                array_column;
                pass_map[cc] = (j < members && tc < TILE) ? c_mem[(first+j)*TILE + tc] : UNUSED;
            end
        end
    endtask

    task run_fold;  // fold f of the current pass: ROWS load cycles, then M + ROWS + COLS - 2 stream cycles
        begin
            for (i = 0; i < ROWS; i = i + 1) begin
                @(negedge clk);
                cycle_idx = cycle_idx + 1;
                busy = busy + 1;
                row = f*ROWS + ROWS - 1 - i;
                load = 1'b1;
                x_valid = 1'b0;
                if (row < H) begin
                    w_row = pw[row];
                    lane_row = pl[row];
                    shift_row = ps[row];
                    feature_in = pf[row];
                    lane_on_in = pon[row];
                end else begin  // below the pass: zero weights, no lanes
                    w_row = 0;
                    lane_row = 0;
                    shift_row = 0;
                    feature_in = 0;
                    lane_on_in = 0;
                end
            end
            for (s = 0; s < M + ROWS + COLS - 2; s = s + 1) begin
                @(negedge clk);
                cycle_idx = cycle_idx + 1;
                busy = busy + 1;
                load = 1'b0;
                if (s == 0) begin  // the previous fold's outputs are all in: collect this fold's
                    collect_first = (f == 0);
                    collect_last = (f == folds_in_pass - 1);
                    for (cc = 0; cc < COLS; cc = cc + 1)
                        colmap[cc] = pass_map[cc];
                end
                if (s < M) begin
                    x_valid = 1'b1;
                    for (k = 0; k < FEATURES; k = k + 1)
                        x_next[k*A_BITS +: A_BITS] = x_mem[s*FEATURES + k];
                    x_vec = x_next;  // one whole assignment (Verilator 5.006 misses partial ones)
                end else begin
                    x_valid = 1'b0;
                end
            end
            stream_last = cycle_idx;
            folds = folds + 1;
        end
    endtask

    task run_pass;
        begin
            build_pass;
            passes = passes + 1;
            folds_in_pass = (H + ROWS - 1) / ROWS;
            if (folds_in_pass == 0) begin  // an empty pass: its columns are zero, no cycle spent
                for (cc = 0; cc < COLS; cc = cc + 1)
                    if (pass_map[cc] != UNUSED)
                        for (m = 0; m < M; m = m + 1)
                            y_rtl[m*N + pass_map[cc]] = 0;
            end
            for (f = 0; f < folds_in_pass; f = f + 1)
                run_fold;
        end
    endtask

    initial begin
{reads}
        $readmemh("{groups}", g_mem);
        $readmemh("{x}", x_mem);
        $readmemh("{y}", y_mem);
        tile_start[0] = 0;
        for (t = 0; t < N_TILES; t = t + 1) begin
            row = tile_start[t];
            for (g = 0; g < N_GROUPS; g = g + 1) begin
                group_row[t*N_GROUPS + g] = row;
                row = row + h_mem[t*N_GROUPS + g];
            end
            tile_start[t+1] = row;
        end
        busy = 0; passes = 0; folds = 0; collected = 0; out_count = 0;
        cycle_idx = 0; stream_last = -2; timing_ok = 1;
        @(negedge clk);
        @(negedge clk);
        rst = 1'b0;
        t = 0;
        while (t < N_TILES) begin
            first = t;
            if (TILE > COLS) begin  // column folds over the tile's used columns
                members = 1;
                live = 0;
                for (c = 0; c < TILE; c = c + 1)
                    if (c_mem[t*TILE + c] != UNUSED) begin
                        live_col[live] = c;
                        live = live + 1;
                    end
                for (cstart = 0; cstart < live; cstart = cstart + COLS)
                    run_pass;
                t = t + 1;
            end else begin  // neighbours reading their inputs in the same order share the pass
                cstart = 0;
                members = 1;
                same = 1;
                while (same && members < COLS / TILE && t + members < N_TILES) begin
                    for (k = 0; k < K; k = k + 1)
                        if (p_mem[(t+members)*K + k] !== p_mem[t*K + k])
                            same = 0;
                    if (same)
                        members = members + 1;
                end
                run_pass;
                t = t + members;
            end
        end
        // Drain: the output buffer takes the last fold's results (not an array cycle).
        for (i = 0; i < ROWS + COLS + 2 && collected < folds; i = i + 1) begin
            @(negedge clk);
            cycle_idx = cycle_idx + 1;
            load = 1'b0;
            x_valid = 1'b0;
        end
        @(negedge clk);
        if (collected != folds)
            timing_ok = 0;
        matched = 0;
        shown = 0;
        for (m = 0; m < M; m = m + 1) begin
            good = 1;
            for (n = 0; n < N; n = n + 1)
                if (y_rtl[m*N + n] !== y_mem[m*N + n]) begin
                    good = 0;
                    if (shown < 3)
                        $display("# vector %0d column %0d: simulated %h, y.hex %h", m, n, y_rtl[m*N + n],
                                 y_mem[m*N + n]);
                    shown = shown + 1;
                end
            matched = matched + good;
        end
        $write("TB layer={name} result=%0s matched=%0d vectors=%0d ",
               (matched == M && timing_ok) ? "PASS" : "FAIL", matched, M);
        $display("cycles=%0d passes=%0d folds=%0d timing=%0s", busy, passes, folds, timing_ok ? "ok" : "bad");
        $finish;
    end
endmodule
"""
